-- Drop pgvector only when this role created it: an operator's superuser may have installed
-- it for c360 (a role that is not a superuser cannot), and then it is theirs to remove.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner
        WHERE e.extname = 'vector' AND r.rolname = current_user
    ) THEN
        DROP EXTENSION vector;
    END IF;
END
$$;
