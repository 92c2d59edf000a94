-- Shard eu2: database placement for hooli and stark (erp_<tenant>, owned by pgtenant's upstream
-- role), and the shared database `saas` for the shared-placement tenants. Runs after
-- 00-pgtenant-role.sql.
CREATE DATABASE erp_hooli OWNER pgtenant;
CREATE DATABASE erp_stark OWNER pgtenant;

\connect erp_hooli
SET ROLE pgtenant;
CREATE TABLE items (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO items (name) VALUES ('hooli: nucleus'), ('hooli: box three');
RESET ROLE;

\connect erp_stark
SET ROLE pgtenant;
CREATE TABLE items (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO items (name) VALUES ('stark: arc reactor'), ('stark: repulsor');
RESET ROLE;

-- Shared placement: every tenant's rows in one table, filtered by row-level security on the
-- setting pgtenant sets per transaction (tenancy.guc = app.current_tenant). The table belongs
-- to the superuser, not to pgtenant's role, and RLS is forced, so the proxy's role can neither
-- switch it off nor drop the policy. This is what `pgtenant rls --table public.items
-- --column tenant_id` generates.
CREATE DATABASE saas;
\connect saas
CREATE TABLE public.items (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL
              DEFAULT NULLIF(current_setting('app.current_tenant', true), '')::text,
    name      text NOT NULL
);
ALTER TABLE public.items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.items
    USING (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::text)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::text);
CREATE INDEX items_tenant_id_idx ON public.items (tenant_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.items TO pgtenant;

-- Seed rows, written as the superuser (which row-level security does not apply to), so each
-- names its tenant explicitly. Through pgtenant a tenant sees only its own.
INSERT INTO public.items (tenant_id, name) VALUES
    ('globex', 'globex: hammock'),
    ('globex', 'globex: doomsday device'),
    ('umbrella', 'umbrella: t-virus sample'),
    ('umbrella', 'umbrella: hive keycard');
