-- Sets aside the messages SNS refused for their own sake, with the reason, if the claim $3 is
-- still ours.
UPDATE outbox o SET failed_at = now(), failure = r.reason
  FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)
 WHERE o.id = r.id AND o.claimed_at = $3 AND o.sent_at IS NULL
