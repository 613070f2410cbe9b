-- Which (coupon, user) pairs of the batch already hold the coupon.
SELECT u.coupon_id, u.user_id
  FROM user_coupons u
  JOIN unnest($1::bigint[], $2::bigint[]) AS p(coupon_id, user_id)
    ON u.coupon_id = p.coupon_id AND u.user_id = p.user_id
