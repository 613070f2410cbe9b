INSERT INTO retention_progress (name, upto) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET upto = EXCLUDED.upto
