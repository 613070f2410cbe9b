DELETE FROM campaign_monthly_stats WHERE month = $1
