-- Webtoon $1's episodes, inserted or updated by number. A thumbnail key follows its URL, and
-- a column the request leaves out keeps its stored value.
INSERT INTO episodes AS e
       (webtoon_id, number, title, thumbnail_url, thumbnail_key, published_at)
SELECT $1, n, t, u, k, p
  FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::date[]) AS x(n, t, u, k, p)
    ON CONFLICT (webtoon_id, number) DO UPDATE
   SET title = EXCLUDED.title,
       thumbnail_url = COALESCE(EXCLUDED.thumbnail_url, e.thumbnail_url),
       thumbnail_key = CASE WHEN EXCLUDED.thumbnail_url IS NULL THEN e.thumbnail_key
                            ELSE EXCLUDED.thumbnail_key END,
       published_at = COALESCE(EXCLUDED.published_at, e.published_at),
       updated_at = now()
