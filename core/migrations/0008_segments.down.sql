DROP TABLE analytics.shares;
DROP TABLE analytics.segment_members;
DROP TABLE analytics.segments;
