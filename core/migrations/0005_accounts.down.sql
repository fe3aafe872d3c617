DROP TABLE governance.api_tokens;
DROP TABLE governance.users;
DROP TABLE governance.audit_log;
DROP FUNCTION governance.audit_log_is_append_only();
DROP TABLE governance.roles;
DROP SCHEMA analytics;
DROP SCHEMA governance;
