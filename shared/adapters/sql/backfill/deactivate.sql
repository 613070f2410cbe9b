-- Deactivates advertiser $1 with reason $2, if it is active; returns when and the error of the
-- month $3 that caused it (NULL month: an operator's decision).
UPDATE advertisers a
   SET active = false, deactivated_reason = $2, deactivated_by = NULL, updated_at = now()
 WHERE a.advertiser_id = $1 AND a.active
RETURNING a.updated_at AS deactivated_at,
          (SELECT m.error FROM cdp_months m
            WHERE m.advertiser_id = a.advertiser_id AND m.month = $3) AS error
