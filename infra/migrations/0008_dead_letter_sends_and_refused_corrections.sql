-- Rolling deploys: a function built before 0007 records a dead letter after sending it and
-- does not name sent_at; the default marks such a row sent, so a newer invocation never takes
-- it for an abandoned claim and sends it again. Claims name sent_at NULL themselves.
ALTER TABLE kafka_dead_letters ALTER COLUMN sent_at SET DEFAULT now();

-- A correction Redis refused (the counter would overflow, or it is not a number): recorded,
-- never retried, never marked applied.
ALTER TABLE budget_sync_accuracy DROP CONSTRAINT budget_sync_accuracy_correction_check;
ALTER TABLE budget_sync_accuracy ADD CONSTRAINT budget_sync_accuracy_correction_check
    CHECK (correction IN ('none', 'pending', 'applied', 'superseded', 'refused'));
