-- Holds alert $1's fan-out until the caller's transaction ends: a second invocation with the
-- same alert (a duplicate batch delivered at once) waits, then finds it completed. A crashed
-- invocation's transaction ends with its connection, and the lock with it.
SELECT pg_advisory_xact_lock(hashtextextended('alert-fanout:' || $1::bigint, 0))
