DROP TABLE agents.escalations;
DROP TABLE agents.turns;
DROP TABLE agents.conversations;
DROP TABLE agents.personas;
DROP SCHEMA agents;
