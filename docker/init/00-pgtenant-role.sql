-- Both shards. The postgres image runs the scripts in /docker-entrypoint-initdb.d once, when the
-- data directory is first created, as the superuser (POSTGRES_USER) with ON_ERROR_STOP.
--
-- pgtenant's upstream login role: SCRAM-SHA-256 password, not a superuser, no BYPASSRLS
-- (row-level security must apply to it in shared placement). The password comes from the
-- container's PGTENANT_PASSWORD (compose.yaml), the same value pgtenant reads through
-- password_env; it is never written into a file.
\getenv pgtenant_password PGTENANT_PASSWORD
\if :{?pgtenant_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'PGTENANT_PASSWORD is not set in this container''s environment'; END $$;
\endif

SET password_encryption = 'scram-sha-256';
CREATE ROLE pgtenant LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'pgtenant_password';
