DELETE FROM campaign_daily_stats WHERE stat_date = $1
