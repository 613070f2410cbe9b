-- TOONPICK's scheduled work (SPEC §3, issue 19): what the daily collection last saw of each
-- catalog title, the readers' activity the app writes, the recommendation sets, and the weekly
-- analyses the API serves.

-- The newest content hash of every title a platform's catalog feed listed. A title is new when
-- it has no row, changed when its hash differs; the row is written only once its request is on
-- the queue, so a crash resends (under the same request id, which webtoon-sync deduplicates)
-- instead of losing the change.
CREATE TABLE catalog_entries (
    platform      TEXT NOT NULL,
    external_id   TEXT NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    content_hash  TEXT NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- The last request sent for the title (create or update).
    request_id    TEXT NOT NULL,
    first_seen_on DATE NOT NULL,
    changed_on    DATE NOT NULL,
    seen_on       DATE NOT NULL,
    PRIMARY KEY (platform, external_id)
);

-- Reader activity, written by the TOONPICK app (one row per event; `event_id` is the app's, so
-- a retried write is a no-op: INSERT ... ON CONFLICT (event_id) DO NOTHING).
CREATE TABLE user_webtoon_events (
    event_id       UUID PRIMARY KEY,
    user_id        BIGINT NOT NULL CHECK (user_id > 0),
    webtoon_id     BIGINT NOT NULL REFERENCES webtoons (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('view', 'episode_read', 'like', 'subscribe')),
    episode_number INTEGER CHECK (episode_number >= 1),
    occurred_at    TIMESTAMPTZ NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'episode_read') = (episode_number IS NOT NULL))
);
CREATE INDEX user_webtoon_events_by_time ON user_webtoon_events (occurred_at);

-- One generation of recommendations. Readers are served the newest complete set; a set being
-- built is invisible, so yesterday's stays readable until today's is whole.
CREATE TABLE recommendation_sets (
    set_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_date  DATE NOT NULL,
    state        TEXT NOT NULL DEFAULT 'building' CHECK (state IN ('building', 'complete')),
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    readers      INTEGER CHECK (readers >= 0),
    -- precision@10 and recall@10 per variant on the held-out day.
    evaluation   JSONB,
    CHECK ((state = 'complete') = (completed_at IS NOT NULL))
);
CREATE INDEX recommendation_sets_served ON recommendation_sets (target_date DESC, set_id DESC)
    WHERE state = 'complete';

-- A set's rows live in their own partition: a superseded set is dropped, not deleted row by row.
CREATE TABLE recommendations (
    set_id     BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    rank       SMALLINT NOT NULL CHECK (rank BETWEEN 1 AND 20),
    webtoon_id BIGINT NOT NULL,
    score      REAL NOT NULL,
    -- The reader's A/B variant (a stable hash of the reader).
    variant    TEXT NOT NULL,
    -- The strongest signal: similar (readers of `because_id` read it too), genre or author
    -- (`because` names which), popular.
    reason     TEXT NOT NULL CHECK (reason IN ('similar', 'genre', 'author', 'popular')),
    because_id BIGINT,
    because    TEXT,
    PRIMARY KEY (set_id, user_id, rank)
) PARTITION BY LIST (set_id);

-- Starts a set for `day` with its partition; returns its id.
CREATE FUNCTION begin_recommendation_set(day DATE) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    id BIGINT;
BEGIN
    INSERT INTO recommendation_sets (target_date) VALUES (day) RETURNING set_id INTO id;
    EXECUTE format('CREATE TABLE %I PARTITION OF recommendations FOR VALUES IN (%s)',
                   'recommendations_' || id, id);
    RETURN id;
END $$;

-- Completes a set, then drops every set that is neither it nor among the two newest complete
-- ones (the one served and the one before, for comparison), and sets left building by a run
-- that died more than six hours ago. Returns how many sets were dropped.
CREATE FUNCTION complete_recommendation_set(id BIGINT, reader_count INTEGER, eval JSONB)
RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    gone BIGINT;
    dropped INTEGER := 0;
BEGIN
    UPDATE recommendation_sets
       SET state = 'complete', completed_at = now(), readers = reader_count, evaluation = eval
     WHERE set_id = id;
    FOR gone IN
        SELECT s.set_id FROM recommendation_sets s
         WHERE s.set_id <> id
           AND (s.state = 'complete' OR s.started_at < now() - interval '6 hours')
           AND s.set_id NOT IN (SELECT k.set_id FROM recommendation_sets k
                                 WHERE k.state = 'complete'
                                 ORDER BY k.target_date DESC, k.set_id DESC LIMIT 2)
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', 'recommendations_' || gone);
        DELETE FROM recommendation_sets WHERE set_id = gone;
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- What readers are served: the newest complete set.
CREATE VIEW current_recommendations AS
SELECT r.*, s.target_date
  FROM recommendations r
  JOIN (SELECT set_id, target_date FROM recommendation_sets
         WHERE state = 'complete'
         ORDER BY target_date DESC, set_id DESC LIMIT 1) s USING (set_id);

-- The weekly analysis of a Monday-to-Sunday week (Asia/Seoul), replaced by a re-run.
CREATE TABLE weekly_analyses (
    week_start       DATE PRIMARY KEY CHECK (extract(isodow FROM week_start) = 1),
    -- [{genre, reads, readers, share, change}] by reads.
    genres           JSONB NOT NULL,
    -- [{webtoon_id, title, reads, previous_reads, change}] week over week.
    rising           JSONB NOT NULL,
    falling          JSONB NOT NULL,
    -- [{day, readers, reads}] for each day of the week.
    daily            JSONB NOT NULL,
    weekly_active    INTEGER NOT NULL CHECK (weekly_active >= 0),
    reads            BIGINT NOT NULL CHECK (reads >= 0),
    reads_per_reader DOUBLE PRECISION NOT NULL CHECK (reads_per_reader >= 0),
    computed_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
