-- Outcomes already recorded for the batch's request ids.
SELECT request_id, outcome FROM coupon_issue_outcomes WHERE request_id = ANY($1)
