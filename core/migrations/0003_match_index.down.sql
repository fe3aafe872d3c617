DROP TABLE match_models;
DROP TABLE match_terms;
DROP TABLE match_keys;
DROP TABLE match_records;
