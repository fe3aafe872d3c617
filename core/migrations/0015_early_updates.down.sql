-- Updates kept for sends not yet recorded go with the table; their sends stay as recorded.
DROP TABLE channels.early_updates;
