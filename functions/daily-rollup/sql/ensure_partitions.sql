-- Raw-event partitions from month $1 to month $2 (migration 0005's function); returns how many
-- it created.
SELECT ensure_ad_event_partitions($1, $2) AS "created!"
