-- The months ($1, $2) pairs, PENDING where they do not exist yet (an EXISTING advertiser's new
-- current month).
INSERT INTO cdp_months (advertiser_id, month)
SELECT * FROM unnest($1::BIGINT[], $2::DATE[])
    ON CONFLICT DO NOTHING
