-- Which of the alert ids $1 name no alert.
SELECT id AS "id!" FROM unnest($1::bigint[]) AS w(id)
 WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = w.id)
