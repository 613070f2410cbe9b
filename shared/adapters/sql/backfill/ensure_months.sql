-- The current month $2 of the advertisers in $1, PENDING, with every month between their
-- latest month and it that does not exist (months that went by while an advertiser was
-- inactive or still backfilling; at most 24). Returns the months created.
INSERT INTO cdp_months (advertiser_id, month)
SELECT a.advertiser_id, g.month::DATE
  FROM unnest($1::BIGINT[]) AS a(advertiser_id)
 CROSS JOIN LATERAL (SELECT max(month) AS latest FROM cdp_months m
                      WHERE m.advertiser_id = a.advertiser_id) l
 CROSS JOIN LATERAL generate_series(
         GREATEST(COALESCE(l.latest + INTERVAL '1 month', $2::DATE::TIMESTAMP),
                  $2::DATE - INTERVAL '23 months'),
         $2::DATE::TIMESTAMP, INTERVAL '1 month') AS g(month)
    ON CONFLICT DO NOTHING
RETURNING advertiser_id, month
