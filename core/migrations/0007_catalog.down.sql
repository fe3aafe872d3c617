DROP TABLE governance.deletion_requests;
DROP TABLE consent;
DROP TABLE governance.access_policies;
DROP TABLE governance.f0_runs;
DROP FUNCTION governance.numeric_value(jsonb);
DROP TABLE governance.attribute_definitions;
