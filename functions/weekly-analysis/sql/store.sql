-- The week's analysis, replacing a previous run's.
INSERT INTO weekly_analyses
       (week_start, genres, rising, falling, daily, weekly_active, reads, reads_per_reader)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (week_start) DO UPDATE
   SET genres = EXCLUDED.genres, rising = EXCLUDED.rising, falling = EXCLUDED.falling,
       daily = EXCLUDED.daily, weekly_active = EXCLUDED.weekly_active, reads = EXCLUDED.reads,
       reads_per_reader = EXCLUDED.reads_per_reader, computed_at = now()
