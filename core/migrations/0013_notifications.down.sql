DROP TABLE notify.sends;
DROP TABLE notify.watch;
DROP TABLE notify.preferences;
DROP TABLE notify.rules;
DROP TABLE notify.templates;
DROP SCHEMA notify;
