-- A request that failed for a reason worth retrying gives its key back.
DELETE FROM admin_idempotency WHERE subject = $1 AND idempotency_key = $2 AND status IS NULL
