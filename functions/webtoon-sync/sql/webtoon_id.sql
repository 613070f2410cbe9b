SELECT id FROM webtoons WHERE platform = $1 AND external_id = $2
