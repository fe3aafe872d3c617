-- Issue 6: the governance schema (accounts, roles, the audit log) and the analytics schema
-- (saved segments, reports). Later migrations add their tables to these schemas.
CREATE SCHEMA governance;
CREATE SCHEMA analytics;

-- A role is a named set of permissions (c360.access.PERMISSIONS); a deployment may add roles.
CREATE TABLE governance.roles (
    name         text PRIMARY KEY,
    permissions  text[] NOT NULL,
    description  text NOT NULL DEFAULT '',
    built_in     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Every administrative change and every read of PII, append-only: the trigger below refuses
-- UPDATE and DELETE, so not even c360's own code can rewrite history.
CREATE TABLE governance.audit_log (
    audit_id     bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    before       jsonb,
    after        jsonb,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON governance.audit_log (at);
CREATE INDEX audit_log_action ON governance.audit_log (action, at);

CREATE FUNCTION governance.audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP;
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON governance.audit_log
    FOR EACH ROW EXECUTE FUNCTION governance.audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON governance.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION governance.audit_log_is_append_only();

-- The built-in roles, as c360.access.BUILT_IN_ROLES has them; c360.accounts keeps them in step
-- with the code at every start, and they cannot be deleted.
INSERT INTO governance.roles (name, permissions, description, built_in) VALUES
    ('admin',
     ARRAY['dashboards:read', 'profiles:read', 'pii:read', 'segments:read', 'segments:write',
           'analytics:read', 'exports:create', 'reports:read', 'reports:write',
           'identity:write', 'pipeline:read', 'pipeline:write', 'governance:read',
           'governance:write', 'sources:write', 'audit:read', 'users:write'],
     'every permission: users, sources, governance, pipeline', true),
    ('analyst',
     ARRAY['dashboards:read', 'profiles:read', 'pii:read', 'segments:read', 'segments:write',
           'analytics:read', 'exports:create', 'reports:read', 'reports:write',
           'identity:write', 'pipeline:read', 'governance:read'],
     'analytics, customers with personal data, identity reviews, governance to read', true),
    ('marketer',
     ARRAY['dashboards:read', 'profiles:read', 'segments:read', 'segments:write',
           'analytics:read', 'exports:create', 'reports:read', 'reports:write'],
     'dashboards, customers (personal data masked), segments and reports', true),
    ('viewer',
     ARRAY['dashboards:read', 'analytics:read', 'segments:read', 'reports:read'],
     'dashboards, analytics, segments and reports, to read only', true);

-- People who sign in to the UI. Names are unique whatever their case (`Lan` is `lan`); the
-- password is kept only as an argon2id hash. `failed_attempts` counts failed sign-ins in a
-- row; reaching the limit sets `locked_until`.
CREATE TABLE governance.users (
    user_id          bigserial PRIMARY KEY,
    name             text NOT NULL CHECK (name <> ''),
    email            text,
    role             text NOT NULL REFERENCES governance.roles (name) ON UPDATE CASCADE,
    password_hash    text NOT NULL,
    disabled         boolean NOT NULL DEFAULT false,
    failed_attempts  integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at  timestamptz,
    -- sessions started before this time are over (a role, password or disabled change)
    sessions_valid_after  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_name ON governance.users (lower(name));
CREATE INDEX users_role ON governance.users (role);

-- Scoped read tokens for the F5 API. Only the SHA-256 of a token is kept: the token itself is
-- shown once, when it is created. `scopes` are permission names (c360.access.PERMISSIONS).
CREATE TABLE governance.api_tokens (
    token_id      bigserial PRIMARY KEY,
    label         text NOT NULL CHECK (label <> ''),
    token_sha256  bytea NOT NULL UNIQUE,
    scopes        text[] NOT NULL,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
