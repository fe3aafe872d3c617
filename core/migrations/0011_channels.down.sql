DROP TABLE channels.tokens;
DROP TABLE channels.delivery_events;
DROP FUNCTION channels.delivery_events_are_append_only();
DROP TABLE channels.deliveries;
DROP TABLE channels.inbound;
DROP SCHEMA channels;
