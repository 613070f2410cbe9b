-- Each raw-event partition with its month, read back by the database's own naming rule
-- (ad_events_partition_month, migration 0010); anything else attached is left out.
SELECT c.relname::text AS "name!",
       ad_events_partition_month(c.relname) AS "month!"
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'ad_events'::regclass
   AND ad_events_partition_month(c.relname) IS NOT NULL
 ORDER BY 1
