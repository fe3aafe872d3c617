-- Evidence and reversibility for identity (issue 3): where each event and identifier first
-- landed (so an unmerge splits a cluster back exactly), undo marks and evidence on merges,
-- pairs never to merge again, the review queue, and the trait values survivorship kept.

-- origin_profile: the profile an event / identifier was first attached to; merges never change
-- it. Rows from before this migration only know their current profile.
ALTER TABLE events ADD COLUMN origin_profile uuid REFERENCES profiles (profile_id);
UPDATE events SET origin_profile = profile_id WHERE profile_id IS NOT NULL;
CREATE INDEX events_origin ON events (origin_profile) WHERE origin_profile IS NOT NULL;

ALTER TABLE identifiers ADD COLUMN origin_profile uuid REFERENCES profiles (profile_id);
UPDATE identifiers SET origin_profile = profile_id;
ALTER TABLE identifiers ALTER COLUMN origin_profile SET NOT NULL;
CREATE INDEX identifiers_origin ON identifiers (origin_profile);

-- A cluster's members point at its live profile; merges and unmerges look them up by it.
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;

-- Survivorship: name -> [{"value": v, "at": order key}] of every value that lost a trait.
ALTER TABLE profiles ADD COLUMN trait_others jsonb NOT NULL DEFAULT '{}';

-- Evidence: rule or model (rule), fields and weights (evidence), score, time (created_at),
-- source records ([[source, messageId] or record ids]); who decided and whether it was undone.
ALTER TABLE merges ADD COLUMN score double precision;
ALTER TABLE merges ADD COLUMN source_records jsonb NOT NULL DEFAULT '[]';
ALTER TABLE merges ADD COLUMN decided_by text;
ALTER TABLE merges ADD COLUMN undone_at timestamptz;
ALTER TABLE merges ADD COLUMN undone_by text;
UPDATE merges SET source_records = jsonb_build_array(jsonb_build_array(source, message_id))
    WHERE source IS NOT NULL;
CREATE INDEX merges_merged ON merges (merged_id);

-- Pairs the matcher was unsure of, waiting for a person to accept (merge) or reject them.
CREATE TABLE match_reviews (
    review_id   bigserial PRIMARY KEY,
    profile_a   uuid NOT NULL REFERENCES profiles (profile_id),
    profile_b   uuid NOT NULL REFERENCES profiles (profile_id),
    score       double precision,
    evidence    jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz,
    decided_by  text,
    note        text,
    merge_id    bigint REFERENCES merges (merge_id),
    CHECK (profile_a < profile_b)
);
-- at most one pending review per unordered pair
CREATE UNIQUE INDEX match_reviews_pending_pair ON match_reviews (profile_a, profile_b)
    WHERE status = 'pending';
CREATE INDEX match_reviews_status ON match_reviews (status, created_at, review_id);

-- Pairs a reviewer or an unmerge said are different people: no merge path joins their
-- clusters again. Stored once per unordered pair (profile_a < profile_b).
CREATE TABLE identity_separations (
    separation_id  bigserial PRIMARY KEY,
    profile_a      uuid NOT NULL REFERENCES profiles (profile_id),
    profile_b      uuid NOT NULL REFERENCES profiles (profile_id),
    reason         text NOT NULL,
    merge_id       bigint REFERENCES merges (merge_id),
    review_id      bigint REFERENCES match_reviews (review_id),
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (profile_a < profile_b),
    UNIQUE (profile_a, profile_b)
);
CREATE INDEX identity_separations_b ON identity_separations (profile_b);
