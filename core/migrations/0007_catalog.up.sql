-- Issue 6: the governance catalogue. Profile attribute definitions and the F0 runs that
-- apply them, access policies for personal data, consent per profile and purpose, and
-- deletion requests.

-- A profile attribute: what it is and how F3 computes it (as data, never as SQL text).
-- `source` 'events' aggregates the profile's events, 'trait' copies a trait. What c360
-- computes itself (event_count, revenue, email, identifiers...) is described in code
-- (c360.governance.attributes.BUILT_IN), read-only, so tests' clean slates keep it.
CREATE TABLE governance.attribute_definitions (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    type            text NOT NULL
                    CHECK (type IN ('number', 'money', 'text', 'timestamp', 'boolean')),
    source          text NOT NULL CHECK (source IN ('events', 'trait')),
    event_names     text[] NOT NULL DEFAULT '{}',
    property        text,
    aggregation     text CHECK (aggregation IN
                        ('count', 'sum', 'min', 'max', 'first', 'last', 'distinct_count')),
    window_days     integer CHECK (window_days > 0),
    trait           text,
    pii             boolean NOT NULL DEFAULT false,
    retention_days  integer CHECK (retention_days > 0),
    owner           text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    version         integer NOT NULL DEFAULT 1,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'active', 'retired')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    CHECK (source <> 'events' OR aggregation IS NOT NULL),
    CHECK (source <> 'trait' OR trait IS NOT NULL)
);

-- A property as an exact number for attribute aggregates: JSON numbers, and strings that
-- are strictly numeric (the money rule); anything else is NULL, left out of sums.
CREATE FUNCTION governance.numeric_value(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(value)
        WHEN 'number' THEN value::numeric
        WHEN 'string' THEN CASE WHEN (value #>> '{}') ~ '^\s*-?[0-9]+(\.[0-9]+)?\s*$'
                                THEN trim(value #>> '{}')::numeric END
    END
$$;

-- Each application of the governance database to the running system.
CREATE TABLE governance.f0_runs (
    run_id       bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    trigger      text NOT NULL CHECK (trigger IN ('ui', 'schedule', 'cli')),
    actor        text NOT NULL,
    outcome      text NOT NULL DEFAULT 'running'
                 CHECK (outcome IN ('running', 'ok', 'failed')),
    steps        jsonb NOT NULL DEFAULT '[]',
    error        text
);
CREATE INDEX f0_runs_started ON governance.f0_runs (started_at DESC);

-- Which role may see which personal attribute unmasked; `*pii*` stands for all of them.
-- A role also needs the pii:read permission; admin sees everything without a row here.
CREATE TABLE governance.access_policies (
    role        text NOT NULL REFERENCES governance.roles (name) ON DELETE CASCADE,
    attribute   text NOT NULL,
    allowed     boolean NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, attribute)
);

-- Consent per profile and purpose (Segment's context.consent.categoryPreferences); the
-- event with the later order key ([event time, receivedAt, messageId]) wins, as for traits.
CREATE TABLE consent (
    profile_id  uuid NOT NULL REFERENCES profiles (profile_id),
    purpose     text NOT NULL,
    granted     boolean NOT NULL,
    updated_at  timestamptz NOT NULL,
    order_key   text[] NOT NULL,
    source      text NOT NULL,
    message_id  text NOT NULL,
    PRIMARY KEY (profile_id, purpose)
);
CREATE INDEX consent_purpose ON consent (purpose, granted);

-- A data subject's request to be forgotten, by any identifier.
CREATE TABLE governance.deletion_requests (
    request_id    bigserial PRIMARY KEY,
    reference     text NOT NULL,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    status        text NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'running', 'done', 'failed')),
    finished_at   timestamptz,
    counts        jsonb NOT NULL DEFAULT '{}',
    error         text
);
CREATE INDEX deletion_requests_status ON governance.deletion_requests (status, requested_at);
