-- Shard eu1: database placement, one database per tenant (erp_<tenant>), owned by pgtenant's
-- upstream role. Runs after 00-pgtenant-role.sql.
CREATE DATABASE erp_acme OWNER pgtenant;
CREATE DATABASE erp_initech OWNER pgtenant;

\connect erp_acme
SET ROLE pgtenant;
CREATE TABLE items (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO items (name) VALUES ('acme: anvil'), ('acme: rocket skates');
RESET ROLE;

\connect erp_initech
SET ROLE pgtenant;
CREATE TABLE items (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO items (name) VALUES ('initech: TPS report'), ('initech: red stapler');
RESET ROLE;
