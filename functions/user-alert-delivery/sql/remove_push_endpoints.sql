-- Forgets push endpoints SNS reports disabled or deleted.
DELETE FROM push_endpoints WHERE endpoint_arn = ANY($1)
