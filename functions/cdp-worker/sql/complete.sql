-- Month $2 of advertiser $1 ran to its end under token $3: COMPLETED with its record counts
-- ($4 processed, $5 failed) and its retries back, one summary row per dataset ($6..$11,
-- replacing an earlier run's), and the advertiser's last completed month. Nothing changes if
-- the month is no longer running under the token (the cleanup failed it meanwhile).
WITH done AS (
    UPDATE cdp_months
       SET state = 'COMPLETED', completed_at = now(), processed_records = $4,
           failed_records = $5, error = NULL, retry_count = 0, next_attempt_at = NULL
     WHERE advertiser_id = $1 AND month = $2 AND claim_token = $3 AND state = 'RUNNING'
 RETURNING advertiser_id, month
), exports AS (
    INSERT INTO cdp_exports (advertiser_id, month, dataset, status, s3_key, records, bytes, sha256)
    SELECT d.advertiser_id, d.month, e.dataset, e.status, e.s3_key, e.records, e.bytes, e.sha256
      FROM done d
     CROSS JOIN unnest($6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::BIGINT[], $11::TEXT[])
           AS e(dataset, status, s3_key, records, bytes, sha256)
        ON CONFLICT (advertiser_id, month, dataset) DO UPDATE
       SET status = excluded.status, s3_key = excluded.s3_key, records = excluded.records,
           bytes = excluded.bytes, sha256 = excluded.sha256, written_at = now()
), advertiser AS (
    UPDATE advertisers a
       SET last_completed_month = GREATEST(a.last_completed_month, d.month), updated_at = now()
      FROM done d
     WHERE a.advertiser_id = d.advertiser_id
)
SELECT count(*) > 0 AS "completed!" FROM done
