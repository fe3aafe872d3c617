-- The probabilistic matcher's state: standardised match records of profiles, their blocking
-- keys (hashed), the term counts behind term-frequency weights, and trained models.

CREATE TABLE match_records (
    record_id   uuid PRIMARY KEY,            -- a profile id (or a record id in a bulk job)
    fields      jsonb NOT NULL,              -- field -> standardised value
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per blocking key of a record: records sharing a key are candidates.
CREATE TABLE match_keys (
    key_hash    bigint NOT NULL,
    record_id   uuid NOT NULL,
    PRIMARY KEY (key_hash, record_id)
);
CREATE INDEX match_keys_record ON match_keys (record_id);

-- How many records hold each value of a term-frequency field.
CREATE TABLE match_terms (
    field       text NOT NULL,
    value       text NOT NULL,
    records     bigint NOT NULL,
    PRIMARY KEY (field, value)
);

CREATE TABLE match_models (
    name        text PRIMARY KEY,
    spec        jsonb NOT NULL,
    model       jsonb NOT NULL,
    trained_at  timestamptz NOT NULL DEFAULT now()
);
