-- The batch's new messages recorded; older queued corrections of the same counters superseded
-- (this batch's messages read the counters later); and the pauses, with their rows in
-- campaign_pauses. Only messages recorded now can pause, so a replay cannot pause a campaign
-- operators resumed since. $14 is `BudgetSync::may_pause` (it asks, and it is about today).
-- Whether the campaign is active and its budget reached (`budget_reached`) is read in the
-- UPDATE itself, under the row's lock, so a concurrent resume or budget change is seen.
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::timestamptz[],
                         $5::bigint[], $6::date[], $7::bigint[], $8::bigint[],
                         $9::float8[], $10::float8[], $11::float8[], $12::bigint[],
                         $13::text[], $14::bool[])
        AS b(topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
             db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
             correction, pause)),
inserted AS (
    INSERT INTO budget_sync_accuracy
        (topic, partition, "offset", produced_at, campaign_id, spend_date,
         redis_spent, db_spent, reported_ratio, accuracy, difference_ratio,
         correction_delta, correction, corrected_at)
    SELECT topic, partition, off, produced_at, campaign_id, spend_date, redis_spent,
           db_spent, reported_ratio, accuracy, difference_ratio, correction_delta,
           correction, CASE WHEN correction = 'applied' THEN now() END
      FROM batch
    ON CONFLICT (topic, partition, "offset") DO NOTHING
    RETURNING topic, partition, "offset"),
superseded AS (
    UPDATE budget_sync_accuracy a SET correction = 'superseded'
      FROM (SELECT campaign_id, spend_date, max(produced_at) AS newest
              FROM batch GROUP BY campaign_id, spend_date) b
     WHERE a.correction = 'pending' AND a.campaign_id = b.campaign_id
       AND a.spend_date = b.spend_date AND a.produced_at <= b.newest),
reached AS (
    SELECT DISTINCT ON (b.campaign_id) b.campaign_id, b.spend_date, b.db_spent
      FROM batch b
      JOIN inserted i
        ON i.topic = b.topic AND i.partition = b.partition AND i."offset" = b.off
     WHERE b.pause
     ORDER BY b.campaign_id, b.db_spent DESC),
paused AS (
    UPDATE campaigns c
       SET status = 'paused', status_reason = 'daily budget reached',
           status_changed_at = now()
      FROM reached r
     WHERE c.campaign_id = r.campaign_id AND c.status = 'active'
       AND c.daily_budget IS NOT NULL AND r.db_spent >= c.daily_budget
    RETURNING c.campaign_id, c.advertiser_id, c.daily_budget, r.spend_date, r.db_spent),
pauses AS (
    INSERT INTO campaign_pauses
        (campaign_id, advertiser_id, spend_date, db_spent, daily_budget, notified_at)
    SELECT campaign_id, advertiser_id, spend_date, db_spent, daily_budget, now()
      FROM paused
    ON CONFLICT (campaign_id, spend_date) DO UPDATE SET
        advertiser_id = EXCLUDED.advertiser_id, db_spent = EXCLUDED.db_spent,
        daily_budget = EXCLUDED.daily_budget, paused_at = now(),
        redis_status_at = NULL, notified_at = now()
    RETURNING campaign_id, advertiser_id, spend_date, db_spent, daily_budget, paused_at)
SELECT (SELECT count(*) FROM inserted) AS "rows!",
       (SELECT coalesce(json_agg(p ORDER BY campaign_id), '[]') FROM pauses p)
           AS "paused!: Json<Vec<Pause>>"
