-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d).
-- One PostgreSQL holds both services' databases in development; each service owns its
-- own database and runs its own migrations at start (ARCHITECTURE.md).
CREATE DATABASE learngreek_sessions;
CREATE DATABASE learngreek_decks;
