-- A NEW advertiser; an id already there is left as it is (adding is idempotent). Returns
-- whether it was added.
INSERT INTO advertisers (advertiser_id, name)
VALUES ($1, $2)
    ON CONFLICT (advertiser_id) DO NOTHING
RETURNING true AS "added!"
