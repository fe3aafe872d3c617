DROP TABLE analytics.report_runs;
DROP TABLE analytics.report_schedules;
DROP TABLE analytics.saved_reports;
