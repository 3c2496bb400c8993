-- Session-service schema starts here; accounts arrive with the session-service issue.
-- (sqlx records every migration in _sqlx_migrations; keep this file unchanged.)
SELECT 1;
