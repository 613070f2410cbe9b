-- Claims up to $2 unsent messages of producer $1, oldest first: those never claimed and those
-- whose claim is older than $3 seconds. Rows another flush holds are skipped. One statement,
-- one now(): the claim's time is the token `settle` and `set_aside` match on.
UPDATE outbox o SET claimed_at = now()
  FROM (SELECT id FROM outbox
         WHERE producer = $1 AND sent_at IS NULL AND failed_at IS NULL
           AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $3))
         ORDER BY id LIMIT $2
           FOR UPDATE SKIP LOCKED) AS due
 WHERE o.id = due.id
RETURNING o.id, o.dedup_key, o.subject, o.body, o.attributes, o.message_key,
          o.claimed_at AS "claimed_at!"
