-- The batch's changes (`domain::quality::decide`), in order: every one into the history (a
-- change seen before is skipped), and each campaign's last into quality_scores.
WITH changes AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::float8[],
                         $5::timestamptz[], $6::bool[])
        WITH ORDINALITY AS c(campaign_id, advertiser_id, previous_score, score,
                             computed_at, sharp_drop, n)),
history AS (
    INSERT INTO quality_score_history (campaign_id, advertiser_id, previous_score,
                                       score, computed_at, sharp_drop, notified_at)
    -- A drop is handed to the outbox in this transaction: flagged, so a function of
    -- the previous release does not announce it again.
    SELECT campaign_id, advertiser_id, previous_score, score, computed_at, sharp_drop,
           CASE WHEN sharp_drop THEN now() END
      FROM changes ORDER BY n
    ON CONFLICT (campaign_id, computed_at) DO NOTHING)
INSERT INTO quality_scores (campaign_id, advertiser_id, score, computed_at)
SELECT DISTINCT ON (campaign_id) campaign_id, advertiser_id, score, computed_at
  FROM changes ORDER BY campaign_id, n DESC
ON CONFLICT (campaign_id) DO UPDATE SET
    advertiser_id = EXCLUDED.advertiser_id, score = EXCLUDED.score,
    computed_at = EXCLUDED.computed_at, updated_at = now()
