-- Webtoon $1's authors become exactly the (name $2, role $3) pairs.
WITH wanted AS (
    SELECT a.id AS author_id, r.role
      FROM unnest($2::text[], $3::text[]) AS r(name, role)
      JOIN authors a ON a.name = r.name),
removed AS (
    DELETE FROM webtoon_authors wa
     WHERE wa.webtoon_id = $1
       AND (wa.author_id, wa.role) NOT IN (SELECT author_id, role FROM wanted))
INSERT INTO webtoon_authors (webtoon_id, author_id, role)
SELECT $1, author_id, role FROM wanted
    ON CONFLICT DO NOTHING
