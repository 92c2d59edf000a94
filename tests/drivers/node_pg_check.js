// node-postgres (pg) through pgtenant in transaction mode (run by tests/drivers.rs).
//
// Environment: PGT_HOST, PGT_PORT, PGT_PASSWORD, PGT_TENANTS ("name:placement,..."),
// PGT_CLIENTS (concurrent clients per tenant); NODE_PATH points at .drivers/node/node_modules.
// Every tenant's `items` starts with exactly `<tenant>-seed-1` and `<tenant>-seed-2`; user
// `app.<tenant>`, database `<tenant>`.
//
// Each client runs named queries (Parse once per connection, then Bind/Execute only), the same
// names meaning different SQL on different clients, in autocommit and in transaction blocks
// that land on different server connections; an error inside a transaction (rolled back, then
// recovery), a named statement whose Parse fails, an empty query, a notice, and a pg Pool.
// Every row read must be the tenant's own; at the end each tenant's table must hold exactly the
// seeds and what its clients committed. Prints `ok node-postgres <checks>`, exits 1 otherwise.
'use strict';

const { Client, Pool } = require('pg');

const env = process.env;
const base = {
  host: env.PGT_HOST || '127.0.0.1',
  port: Number(env.PGT_PORT),
  password: env.PGT_PASSWORD,
  connectionTimeoutMillis: 10000,
};
const TENANTS = env.PGT_TENANTS.split(',').map((t) => t.split(':')[0]);
const CLIENTS = Number(env.PGT_CLIENTS || '6');
const ROUNDS = 4;

const ALL_ROWS = 'SELECT tenant_id, name FROM items ORDER BY name';
const OWN_ROWS = 'SELECT name FROM items WHERE name LIKE $1 ORDER BY name';
const INSERT = 'INSERT INTO items (name) VALUES ($1) RETURNING tenant_id';

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`mismatch: ${what}`);
  checks += 1;
}

function settings(tenant) {
  return { ...base, user: `app.${tenant}`, database: tenant };
}

function checkRows(tenant, rows, mustHave, where) {
  const bad = rows.filter((r) => r.tenant_id !== tenant || !r.name.startsWith(`${tenant}-`));
  check(bad.length === 0, `${tenant} ${where}: rows of another tenant: ${JSON.stringify(bad)}`);
  const names = new Set(rows.map((r) => r.name));
  const missing = mustHave.filter((n) => !names.has(n));
  check(missing.length === 0, `${tenant} ${where}: missing ${missing}`);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function client(tenant, i) {
  const seeds = [`${tenant}-seed-1`, `${tenant}-seed-2`];
  const prefix = `${tenant}-c${i}-`;
  const mine = [];
  const notices = [];
  const c = new Client(settings(tenant));
  c.on('notice', (n) => notices.push(n.message));
  await c.connect();
  // The same statement names mean different SQL on odd and even clients.
  const [nOwn, nAll] = i % 2 ? ['q1', 'q2'] : ['q2', 'q1'];
  const own = async () =>
    (await c.query({ name: nOwn, text: OWN_ROWS, values: [prefix + '%'] })).rows.map((r) => r.name);
  const all = async () => (await c.query({ name: nAll, text: ALL_ROWS })).rows;
  const insert = async (name) => {
    const r = await c.query({ name: 'ins', text: INSERT, values: [name] });
    check(r.rows[0].tenant_id === tenant, `${tenant}: insert of ${name} tagged ${r.rows[0].tenant_id}`);
  };
  try {
    checkRows(tenant, await all(), seeds, 'first read');
    check(same(await own(), []), `${tenant}: fresh client sees own rows`);
    for (let r = 0; r < ROUNDS; r++) {
      await insert(`${prefix}a${r}`);
      mine.push(`${prefix}a${r}`);
      mine.sort();
      check(same(await own(), mine), `${tenant}: own rows after insert ${r}`);

      await c.query('BEGIN');
      await insert(`${prefix}t${r}`);
      mine.push(`${prefix}t${r}`);
      mine.sort();
      checkRows(tenant, await all(), seeds.concat(mine), 'in tx');
      check(same(await own(), mine), `${tenant}: own rows in tx ${r}`);
      await c.query('COMMIT');

      // An error inside a transaction: the transaction is aborted, then rolled back.
      await c.query('BEGIN');
      await insert(`${prefix}lost${r}`);
      let failed = null;
      try {
        await c.query({ name: 'div', text: 'SELECT 6 / $1::int AS v', values: [0] });
      } catch (e) {
        failed = e.code;
      }
      check(failed === '22012', `${tenant}: division by zero gave ${failed}`);
      let aborted = null;
      try {
        await own();
      } catch (e) {
        aborted = e.code;
      }
      check(aborted === '25P02', `${tenant}: statement in aborted tx gave ${aborted}`);
      await c.query('ROLLBACK');
      check(same(await own(), mine), `${tenant}: own rows after rollback ${r}`);
      const six = await c.query({ name: 'div', text: 'SELECT 6 / $1::int AS v', values: [2] });
      check(six.rows[0].v === 3, `${tenant}: named statement after error`);

      // Queued queries (node-postgres sends them one after another on this client).
      const results = await Promise.all([own(), all(), own()]);
      check(same(results[0], mine) && same(results[2], mine), `${tenant}: queued own rows`);
      checkRows(tenant, results[1], seeds.concat(mine), 'queued read');
    }
    // A named statement whose Parse fails, twice, then a good one.
    for (let k = 0; k < 2; k++) {
      let code = null;
      try {
        await c.query({ name: 'broken', text: 'SELEC 1' });
      } catch (e) {
        code = e.code;
      }
      check(code === '42601', `${tenant}: broken statement gave ${code}`);
    }
    check(same(await own(), mine), `${tenant}: own rows after broken statement`);

    const empty = await c.query('');
    check(empty.rows.length === 0, `${tenant}: empty query`);
    await c.query('ROLLBACK');
    check(notices.some((n) => n.includes('no transaction in progress')), `${tenant}: notice ${notices}`);
  } finally {
    await c.end();
  }
  return mine;
}

async function poolUser(tenant) {
  const pool = new Pool({ ...settings(tenant), max: 3 });
  try {
    const seeds = [`${tenant}-seed-1`, `${tenant}-seed-2`];
    await Promise.all(
      Array.from({ length: 9 }, async (_, k) => {
        const r = await pool.query({ name: 'pool_all', text: ALL_ROWS });
        checkRows(tenant, r.rows, seeds, `pool ${k}`);
      })
    );
  } finally {
    await pool.end();
  }
}

async function main() {
  const failures = [];
  const written = Object.fromEntries(TENANTS.map((t) => [t, []]));
  const jobs = [];
  for (const t of TENANTS) {
    for (let i = 0; i < CLIENTS; i++) {
      jobs.push(
        client(t, i).then(
          (m) => written[t].push(...m),
          (e) => failures.push(`${t} client ${i}: ${e.stack || e}`)
        )
      );
    }
    jobs.push(poolUser(t).catch((e) => failures.push(`${t} pool: ${e.stack || e}`)));
  }
  await Promise.all(jobs);
  if (failures.length === 0) {
    for (const t of TENANTS) {
      const c = new Client(settings(t));
      await c.connect();
      const rows = (await c.query(ALL_ROWS)).rows;
      await c.end();
      const expected = [`${t}-seed-1`, `${t}-seed-2`, ...written[t]].sort();
      if (!same(rows.map((r) => r.name), expected) || rows.some((r) => r.tenant_id !== t)) {
        failures.push(`${t}: final rows ${JSON.stringify(rows)} != ${expected}`);
      } else {
        check(true, 'final');
      }
    }
  }
  if (failures.length) {
    for (const f of failures) console.error('FAIL', f);
    process.exit(1);
  }
  console.log(`ok node-postgres ${checks}`);
}

const timer = setTimeout(() => {
  console.error('FAIL node-postgres: no result within 100 s');
  process.exit(1);
}, 100000);
timer.unref();
main().catch((e) => {
  console.error('FAIL', e.stack || e);
  process.exit(1);
});
