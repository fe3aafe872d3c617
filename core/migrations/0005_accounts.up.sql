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
