-- Back to the 0001 schema: the new tables, then the new columns (their indexes go with them).
DROP TABLE IF EXISTS identity_separations;
DROP TABLE IF EXISTS match_reviews;
DROP INDEX IF EXISTS merges_merged;
ALTER TABLE merges DROP COLUMN IF EXISTS undone_by;
ALTER TABLE merges DROP COLUMN IF EXISTS undone_at;
ALTER TABLE merges DROP COLUMN IF EXISTS decided_by;
ALTER TABLE merges DROP COLUMN IF EXISTS source_records;
ALTER TABLE merges DROP COLUMN IF EXISTS score;
ALTER TABLE profiles DROP COLUMN IF EXISTS trait_others;
DROP INDEX IF EXISTS profiles_merged_into;
ALTER TABLE identifiers DROP COLUMN IF EXISTS origin_profile;
ALTER TABLE events DROP COLUMN IF EXISTS origin_profile;
