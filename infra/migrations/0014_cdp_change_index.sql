-- The CDP orchestrator asks, every 5 minutes and for every EXISTING advertiser, when its
-- current month's daily rows last changed (max(rolled_up_at)). With rolled_up_at in the index
-- that is an index-only scan; the index replaces the one on (advertiser_id, stat_date) alone,
-- which it serves as well.
CREATE INDEX campaign_daily_stats_advertiser_changes
    ON campaign_daily_stats (advertiser_id, stat_date) INCLUDE (rolled_up_at);
DROP INDEX campaign_daily_stats_advertiser;
