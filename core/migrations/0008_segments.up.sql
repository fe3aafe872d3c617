-- Issue 6: saved segments, their members (kept current by the segments stage as profiles
-- change), and shares of saved segments and reports with roles or users.

-- A saved segment: a filter (c360.segments.spec) over live profiles. `owner` is the actor
-- that saved it (`user:lan`, as c360.access.Principal.actor names it).
CREATE TABLE analytics.segments (
    segment_id    bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    spec          jsonb NOT NULL,
    description   text NOT NULL DEFAULT '',
    owner         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    member_count  bigint NOT NULL DEFAULT 0,
    computed_at   timestamptz
);
CREATE INDEX segments_owner ON analytics.segments (owner);

-- Who is in a saved segment, and since when. A profile that stops matching (or is merged
-- away) leaves; one deleted by a deletion request leaves with it.
CREATE TABLE analytics.segment_members (
    segment_id  bigint NOT NULL REFERENCES analytics.segments (segment_id) ON DELETE CASCADE,
    profile_id  uuid NOT NULL REFERENCES profiles (profile_id) ON DELETE CASCADE,
    since       timestamptz NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);
-- the customer page asks which segments hold one profile
CREATE INDEX segment_members_profile ON analytics.segment_members (profile_id);

-- A saved segment or report shared with a role or with one user (exactly one of the two).
-- object_id points into the object's own table, so no foreign key: c360.sharing.forget()
-- removes an object's shares when the object is deleted.
CREATE TABLE analytics.shares (
    share_id     bigserial PRIMARY KEY,
    object_type  text NOT NULL CHECK (object_type IN ('segment', 'report')),
    object_id    bigint NOT NULL,
    role         text REFERENCES governance.roles (name) ON DELETE CASCADE,
    user_id      bigint,
    shared_by    text NOT NULL,
    shared_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role IS NULL) <> (user_id IS NULL))
);
CREATE UNIQUE INDEX shares_role ON analytics.shares (object_type, object_id, role)
    WHERE role IS NOT NULL;
CREATE UNIQUE INDEX shares_user ON analytics.shares (object_type, object_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX shares_grantee ON analytics.shares (object_type, role, user_id);
