-- Opens alert $1's ledger row (an attempt after a crash finds it open).
INSERT INTO alert_fanouts (alert_id) VALUES ($1) ON CONFLICT (alert_id) DO NOTHING
