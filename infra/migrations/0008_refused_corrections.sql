-- A correction Redis refused (the counter would overflow, or it is not an integer): recorded,
-- never retried, never marked applied. The allowed set only widens, so the constraint is added
-- without scanning the table under its lock (NOT VALID); every existing row already holds.
ALTER TABLE budget_sync_accuracy DROP CONSTRAINT budget_sync_accuracy_correction_check;
ALTER TABLE budget_sync_accuracy ADD CONSTRAINT budget_sync_accuracy_correction_check
    CHECK (correction IN ('none', 'pending', 'applied', 'superseded', 'refused')) NOT VALID;
