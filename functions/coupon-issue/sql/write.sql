-- Records the batch's fresh decisions and applies them. Only what was recorded is granted,
-- and stock moves by what was granted: a request id recorded meanwhile by another writer takes
-- nothing. The WHERE keeps stock from going below zero whatever happens; the caller checks the
-- counts agree.
WITH decided AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                         $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[])
        AS d(request_id, coupon_id, user_id, requested_at, outcome, reason,
             topic, partition, off)),
recorded AS (
    INSERT INTO coupon_issue_outcomes (request_id, coupon_id, user_id, requested_at,
                                       outcome, reason, topic, partition, "offset")
    SELECT request_id, coupon_id, user_id, requested_at, outcome, reason,
           topic, partition, off
      FROM decided ORDER BY request_id
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, coupon_id, user_id, outcome),
granted AS (
    INSERT INTO user_coupons (coupon_id, user_id, request_id)
    SELECT coupon_id, user_id, request_id FROM recorded WHERE outcome = 'issued'
    ON CONFLICT DO NOTHING
    RETURNING coupon_id),
per_coupon AS (
    SELECT coupon_id, count(*) AS n FROM granted GROUP BY coupon_id),
taken AS (
    UPDATE coupons c
       SET remaining_stock = c.remaining_stock - p.n, updated_at = now()
      FROM per_coupon p
     WHERE c.id = p.coupon_id AND c.remaining_stock >= p.n
    RETURNING p.n)
SELECT (SELECT count(*) FROM recorded) AS "recorded!",
       (SELECT count(*) FROM recorded WHERE outcome = 'issued') AS "issued!",
       (SELECT count(*) FROM granted) AS "granted!",
       (SELECT coalesce(sum(n), 0)::bigint FROM taken) AS "taken!",
       (SELECT coalesce(jsonb_object_agg(outcome, n), '{}')
          FROM (SELECT outcome, count(*) AS n FROM recorded GROUP BY outcome) o)
           AS "outcomes!: Json<HashMap<String, i64>>"
