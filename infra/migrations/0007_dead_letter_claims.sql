-- A dead letter is claimed (a row without sent_at) before it is produced and marked sent after,
-- so two invocations delivered the same batch at once send it once; a claim whose invocation
-- died before sending is taken over once it is older than a produce can take (2 minutes).
ALTER TABLE kafka_dead_letters
    ADD COLUMN claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN sent_at TIMESTAMPTZ;

-- Every row so far was written after its record was sent.
UPDATE kafka_dead_letters SET sent_at = created_at;
