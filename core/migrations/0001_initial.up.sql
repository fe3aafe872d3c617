-- Events, identifiers, profiles, merges and the lake index: the core of issue 2.

CREATE TABLE profiles (
    profile_id      uuid PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    merged_into     uuid REFERENCES profiles (profile_id),
    first_seen      timestamptz,
    last_seen       timestamptz,
    event_count     bigint NOT NULL DEFAULT 0,
    events_by_type  jsonb NOT NULL DEFAULT '{}',
    order_count     bigint NOT NULL DEFAULT 0,
    revenue         numeric NOT NULL DEFAULT 0,
    first_order_at  timestamptz,
    last_order_at   timestamptz,
    -- traits: name -> value; trait_times: name -> [event time, receivedAt, messageId] of the
    -- event that set it, so a later event wins whatever order events arrive in.
    traits          jsonb NOT NULL DEFAULT '{}',
    trait_times     jsonb NOT NULL DEFAULT '{}',
    attributes      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX profiles_live_revenue ON profiles (revenue DESC) WHERE merged_into IS NULL;
CREATE INDEX profiles_live_last_seen ON profiles (last_seen DESC) WHERE merged_into IS NULL;

-- One row per event, keyed by source and messageId: the first accepted copy wins.
CREATE TABLE events (
    source        text NOT NULL,
    message_id    text NOT NULL,
    type          text NOT NULL,
    event         text,
    customer_key  text NOT NULL,
    user_id       text,
    anonymous_id  text,
    event_time    timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    revenue       numeric,
    identifiers   jsonb NOT NULL DEFAULT '[]',
    payload       jsonb NOT NULL,
    warnings      jsonb NOT NULL DEFAULT '[]',
    profile_id    uuid REFERENCES profiles (profile_id),
    resolved_at   timestamptz,
    PRIMARY KEY (source, message_id)
);
CREATE INDEX events_unresolved ON events (received_at) WHERE profile_id IS NULL;
CREATE INDEX events_profile ON events (profile_id, event_time);

CREATE TABLE identifiers (
    id_type     text NOT NULL,
    id_value    text NOT NULL,
    raw_value   text NOT NULL,
    trust       smallint NOT NULL,
    profile_id  uuid NOT NULL REFERENCES profiles (profile_id),
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (id_type, id_value)
);
CREATE INDEX identifiers_profile ON identifiers (profile_id);

-- Why two profiles became one: the evidence an unmerge will need.
CREATE TABLE merges (
    merge_id       bigserial PRIMARY KEY,
    surviving_id   uuid NOT NULL REFERENCES profiles (profile_id),
    merged_id      uuid NOT NULL REFERENCES profiles (profile_id),
    rule           text NOT NULL,
    evidence       jsonb NOT NULL,
    source         text,
    message_id     text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merges_surviving ON merges (surviving_id);

-- Identifiers an event carried that belong to a profile it could not be merged with.
CREATE TABLE identity_conflicts (
    conflict_id   bigserial PRIMARY KEY,
    profile_id    uuid NOT NULL REFERENCES profiles (profile_id),
    other_id      uuid NOT NULL REFERENCES profiles (profile_id),
    id_type       text NOT NULL,
    id_value      text NOT NULL,
    reason        text NOT NULL,
    source        text,
    message_id    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Which lake file holds each event, so a replay never writes an event to the lake twice.
CREATE TABLE lake_index (
    source      text NOT NULL,
    message_id  text NOT NULL,
    file        text NOT NULL,
    PRIMARY KEY (source, message_id)
);
CREATE INDEX lake_index_file ON lake_index (file);
