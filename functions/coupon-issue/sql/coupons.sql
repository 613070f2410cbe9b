-- The batch's coupons, locked in id order (so concurrent batches cannot deadlock) until the
-- batch's outcomes are written.
SELECT id, status = 'active' AS "active!", remaining_stock AS remaining, valid_from, valid_until
  FROM coupons
 WHERE id = ANY($1)
 ORDER BY id
   FOR NO KEY UPDATE
