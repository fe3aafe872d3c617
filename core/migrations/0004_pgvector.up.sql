-- pgvector holds embeddings for the agents (profiles, knowledge). A server without the
-- extension is refused before this runs (c360.migrate.check_server says what to install).
CREATE EXTENSION IF NOT EXISTS vector;
