UPDATE campaign_pauses SET redis_status_at = now() WHERE id = ANY($1)
