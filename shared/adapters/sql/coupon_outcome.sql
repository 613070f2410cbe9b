-- The recorded outcome of a coupon request, if it has been decided.
SELECT coupon_id, user_id, outcome, reason, decided_at
  FROM coupon_issue_outcomes
 WHERE request_id = $1
