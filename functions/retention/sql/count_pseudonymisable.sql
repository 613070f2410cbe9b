-- What a pseudonymisation of [$1, $2) would change (a dry run).
SELECT count(*) AS "events!"
  FROM ad_events
 WHERE occurred_at >= $1 AND occurred_at < $2 AND anonymised_at IS NULL
