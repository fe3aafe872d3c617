DROP TABLE governance.dlq_replays;
DROP TABLE governance.tracking_plans;
DROP TABLE governance.write_keys;
DROP TABLE governance.sources;
