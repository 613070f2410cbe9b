-- Each flushed correction's new state (`Correction::as_str`).
UPDATE budget_sync_accuracy a
   SET correction = c.state,
       corrected_at = CASE WHEN c.state = 'applied' THEN now() END
  FROM unnest($1::bigint[], $2::text[]) AS c(id, state)
 WHERE a.id = c.id
