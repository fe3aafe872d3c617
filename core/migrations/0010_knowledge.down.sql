DROP TABLE knowledge.items;
DROP TABLE knowledge.embedding_model;
DROP SCHEMA knowledge;
