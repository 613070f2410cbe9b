-- One mutation, as the audit trail keeps it.
INSERT INTO admin_audit (subject, action, target, request_id, idempotency_key, status, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7)
