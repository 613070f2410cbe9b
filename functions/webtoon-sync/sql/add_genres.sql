-- Sorted inserts keep concurrent transactions from deadlocking on the unique index.
INSERT INTO genres (name)
SELECT DISTINCT n FROM unnest($1::text[]) AS n ORDER BY n
    ON CONFLICT (name) DO NOTHING
