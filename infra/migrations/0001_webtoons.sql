-- Webtoon catalogue (SPEC §1): one row per (platform, external_id), authors and genres as
-- related rows, episodes by (webtoon, number), and a ledger of processed requests that makes
-- redelivered SQS messages no-ops.

CREATE TABLE webtoons (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform          TEXT NOT NULL,
    external_id       TEXT NOT NULL,
    title             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ONGOING', 'COMPLETED', 'HIATUS')),
    rating            DOUBLE PRECISION CHECK (rating BETWEEN 0 AND 10),
    age_rating        TEXT CHECK (age_rating IN ('ALL', '12', '15', '19')),
    publish_days      TEXT[] NOT NULL DEFAULT '{}',
    thumbnail_url     TEXT,
    thumbnail_key     TEXT,
    cover_url         TEXT,
    cover_key         TEXT,
    -- requested_at of the newest request applied; older requests arriving late are ignored.
    source_updated_at TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT webtoons_natural_key UNIQUE (platform, external_id)
);

CREATE TABLE authors (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE webtoon_authors (
    webtoon_id BIGINT NOT NULL REFERENCES webtoons (id) ON DELETE CASCADE,
    author_id  BIGINT NOT NULL REFERENCES authors (id),
    role       TEXT NOT NULL CHECK (role IN ('WRITER', 'ARTIST', 'ORIGINAL')),
    PRIMARY KEY (webtoon_id, author_id, role)
);
CREATE INDEX webtoon_authors_by_author ON webtoon_authors (author_id);

CREATE TABLE genres (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE webtoon_genres (
    webtoon_id BIGINT NOT NULL REFERENCES webtoons (id) ON DELETE CASCADE,
    genre_id   BIGINT NOT NULL REFERENCES genres (id),
    PRIMARY KEY (webtoon_id, genre_id)
);
CREATE INDEX webtoon_genres_by_genre ON webtoon_genres (genre_id);

CREATE TABLE episodes (
    webtoon_id    BIGINT NOT NULL REFERENCES webtoons (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL CHECK (number >= 1),
    title         TEXT NOT NULL,
    thumbnail_url TEXT,
    thumbnail_key TEXT,
    published_at  DATE,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (webtoon_id, number)
);

-- One row per request id, written in the same transaction as the change it records. The
-- completion body is stored so a resend after a crash is byte-for-byte the same message.
CREATE TABLE webtoon_requests (
    request_id         TEXT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('create', 'update')),
    webtoon_id         BIGINT REFERENCES webtoons (id) ON DELETE SET NULL,
    outcome            TEXT NOT NULL,
    completion         JSONB NOT NULL,
    processed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completion_sent_at TIMESTAMPTZ
);
CREATE INDEX webtoon_requests_unsent ON webtoon_requests (processed_at)
    WHERE completion_sent_at IS NULL;
