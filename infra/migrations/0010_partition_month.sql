-- The raw-event partition naming rule, both ways, in one place: ad_events_partition_name (0005)
-- names a month's partition, and this reads the month back from a name (NULL for any other
-- name), so retention asks the database instead of knowing the pattern itself.
CREATE FUNCTION ad_events_partition_month(name TEXT) RETURNS DATE
LANGUAGE sql IMMUTABLE AS $$
    SELECT make_date(m[1]::int, m[2]::int, 1)
      FROM regexp_match(name, '^ad_events_y([0-9]{4})m(0[1-9]|1[0-2])$') AS m
$$;
