-- Issue 6: sources and their write keys, tracking plans, and replays of dead-lettered events.

-- A source is where events come from (a website, an app, a server); its events carry its name.
CREATE TABLE governance.sources (
    name         text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL
);

-- Write keys are kept only as their SHA-256; `prefix` is what people see to tell keys apart.
-- A rotated key gets an `expires_at` (its grace period); a revoked one a `revoked_at`.
CREATE TABLE governance.write_keys (
    key_id       text PRIMARY KEY,
    source       text NOT NULL REFERENCES governance.sources (name) ON DELETE CASCADE,
    key_sha256   bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX write_keys_source ON governance.write_keys (source, created_at);

-- Each change of a plan is a new version; the active row of (source, event) is enforced.
CREATE TABLE governance.tracking_plans (
    source       text NOT NULL,
    event        text NOT NULL,
    version      integer NOT NULL CHECK (version > 0),
    schema       jsonb NOT NULL,
    action       text NOT NULL CHECK (action IN ('flag', 'dlq')),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    PRIMARY KEY (source, event, version)
);
CREATE UNIQUE INDEX tracking_plans_one_active
    ON governance.tracking_plans (source, event) WHERE active;

-- Every replay of a c360-dlq entry; an entry is accepted by a replay at most once.
CREATE TABLE governance.dlq_replays (
    replay_id    bigserial PRIMARY KEY,
    entry_id     text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    code         text,
    message      text,
    replayed_at  timestamptz NOT NULL DEFAULT now(),
    replayed_by  text NOT NULL
);
CREATE UNIQUE INDEX dlq_replays_accepted_once
    ON governance.dlq_replays (entry_id) WHERE outcome = 'accepted';
CREATE INDEX dlq_replays_entry ON governance.dlq_replays (entry_id);
