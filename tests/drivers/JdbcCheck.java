// pgjdbc through pgtenant in transaction mode (run by tests/drivers.rs, which compiles this file
// against /usr/share/java/postgresql.jar into a temporary directory).
//
// Environment: PGT_HOST, PGT_PORT, PGT_PASSWORD, PGT_TENANTS ("name:placement,..."),
// PGT_CLIENTS (concurrent clients per tenant). Every tenant's `items` starts with exactly
// `<tenant>-seed-1` and `<tenant>-seed-2`; user `app.<tenant>`, database `<tenant>`.
//
// Each client uses prepareThreshold=1 (named server statements S_1, S_2, ... from the first
// execution, the same names meaning different SQL on different clients) across autocommit
// statements and transactions that land on different server connections; batches (many
// Bind/Execute, one Sync), an error in the middle of a batch (none of it applied, then
// recovery), an error inside a transaction, large objects (Fastpath FunctionCall messages),
// DEALLOCATE ALL / DISCARD ALL, a tiny statement cache (pgjdbc Closes evicted statements), an
// empty query and a notice. Every row read must be the tenant's own; at the end each tenant's
// table must hold exactly the seeds and what its clients committed. Then, outside shared
// placement (where DDL is refused), a table's columns change under a prepared `SELECT *` held
// on both server connections: pgjdbc's own retry of "cached plan must not change result type"
// must work for every client.
// Prints `ok pgjdbc <checks>`, exits 1 otherwise.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import org.postgresql.PGConnection;
import org.postgresql.largeobject.LargeObject;
import org.postgresql.largeobject.LargeObjectManager;

public class JdbcCheck {
    static final String HOST = System.getenv().getOrDefault("PGT_HOST", "127.0.0.1");
    static final String PORT = System.getenv("PGT_PORT");
    static final String PASSWORD = System.getenv("PGT_PASSWORD");
    static final int CLIENTS = Integer.parseInt(System.getenv().getOrDefault("PGT_CLIENTS", "6"));
    static final int ROUNDS = 4;

    static final String ALL_ROWS = "SELECT tenant_id, name FROM items ORDER BY name";
    static final String OWN_ROWS = "SELECT name FROM items WHERE name LIKE ? ORDER BY name";
    static final String INSERT = "INSERT INTO items (name) VALUES (?) RETURNING tenant_id";
    static final String INSERT_MANY = "INSERT INTO items (name) VALUES (?)";

    static final AtomicInteger checks = new AtomicInteger();
    static final List<String> SHARED = new ArrayList<>();

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new IllegalStateException("mismatch: " + what);
        }
        checks.incrementAndGet();
    }

    static Connection connect(String tenant, int cacheQueries) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", "app." + tenant);
        p.setProperty("password", PASSWORD);
        p.setProperty("prepareThreshold", "1");
        p.setProperty("preparedStatementCacheQueries", Integer.toString(cacheQueries));
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "60");
        return DriverManager.getConnection("jdbc:postgresql://" + HOST + ":" + PORT + "/" + tenant, p);
    }

    static List<String[]> allRows(Connection c) throws SQLException {
        List<String[]> rows = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(ALL_ROWS); ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
                rows.add(new String[] {rs.getString(1), rs.getString(2)});
            }
        }
        return rows;
    }

    static List<String> own(PreparedStatement ps, String prefix) throws SQLException {
        ps.setString(1, prefix + "%");
        List<String> names = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
                names.add(rs.getString(1));
            }
        }
        return names;
    }

    static void checkRows(String tenant, List<String[]> rows, List<String> mustHave, String where) {
        List<String> names = new ArrayList<>();
        for (String[] r : rows) {
            check(r[0].equals(tenant) && r[1].startsWith(tenant + "-"),
                tenant + " " + where + ": row of another tenant: " + r[0] + "/" + r[1]);
            names.add(r[1]);
        }
        check(names.containsAll(mustHave), tenant + " " + where + ": missing rows in " + names);
    }

    static List<String> sorted(List<String> l) {
        List<String> s = new ArrayList<>(l);
        Collections.sort(s);
        return s;
    }

    static void insert(Connection c, String tenant, String name) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(INSERT)) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next() && rs.getString(1).equals(tenant), tenant + ": insert of " + name);
            }
        }
    }

    static List<String> client(String tenant, int i) throws Exception {
        List<String> seeds = List.of(tenant + "-seed-1", tenant + "-seed-2");
        String prefix = tenant + "-c" + i + "-";
        List<String> mine = new ArrayList<>();
        try (Connection c = connect(tenant, 256)) {
            PreparedStatement own;
            // A client-specific order: S_1 is different SQL on odd and even clients.
            if (i % 2 == 1) {
                own = c.prepareStatement(OWN_ROWS);
                check(own(own, prefix).isEmpty(), tenant + ": fresh client sees own rows");
                checkRows(tenant, allRows(c), seeds, "first read");
            } else {
                checkRows(tenant, allRows(c), seeds, "first read");
                own = c.prepareStatement(OWN_ROWS);
                check(own(own, prefix).isEmpty(), tenant + ": fresh client sees own rows");
            }
            for (int r = 0; r < ROUNDS; r++) {
                insert(c, tenant, prefix + "a" + r);
                mine.add(prefix + "a" + r);
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after insert " + r);

                c.setAutoCommit(false);
                insert(c, tenant, prefix + "t" + r);
                mine.add(prefix + "t" + r);
                checkRows(tenant, allRows(c), mine, "in tx");
                c.commit();

                // An error inside a transaction, rolled back.
                insert(c, tenant, prefix + "lost" + r);
                try (PreparedStatement div = c.prepareStatement("SELECT 1 / ?::int")) {
                    div.setInt(1, 0);
                    div.executeQuery();
                    check(false, tenant + ": division by zero did not raise");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), tenant + ": division gave " + e.getSQLState());
                }
                c.rollback();
                c.setAutoCommit(true);
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after rollback " + r);

                // A batch: Bind/Execute for each row, one Sync.
                try (PreparedStatement ps = c.prepareStatement(INSERT_MANY)) {
                    for (int k = 0; k < 4; k++) {
                        ps.setString(1, prefix + "m" + r + "-" + k);
                        ps.addBatch();
                        mine.add(prefix + "m" + r + "-" + k);
                    }
                    ps.executeBatch();
                }
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after batch " + r);

                // An error in the middle of a batch: none of it is applied.
                try (PreparedStatement ps = c.prepareStatement(INSERT_MANY)) {
                    ps.setString(1, prefix + "x" + r + "-0");
                    ps.addBatch();
                    ps.setNull(1, java.sql.Types.VARCHAR);
                    ps.addBatch();
                    ps.setString(1, prefix + "x" + r + "-2");
                    ps.addBatch();
                    ps.executeBatch();
                    check(false, tenant + ": batch with a NULL name did not fail");
                } catch (BatchUpdateException e) {
                    check("23502".equals(e.getSQLState()), tenant + ": batch error " + e.getSQLState());
                }
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after failed batch " + r);
            }

            // Large objects: pgjdbc calls lo_* through Fastpath (FunctionCall messages). Large
            // objects are not covered by row-level security, so in shared placement the guard
            // refuses them (42501); elsewhere they work.
            c.setAutoCommit(false);
            try {
                LargeObjectManager lom = c.unwrap(PGConnection.class).getLargeObjectAPI();
                long oid = lom.createLO();
                try (LargeObject lo = lom.open(oid, LargeObjectManager.READWRITE)) {
                    lo.write(prefix.getBytes("UTF-8"));
                    lo.seek(0);
                    check(new String(lo.read(prefix.length()), "UTF-8").equals(prefix), tenant + ": large object");
                }
                lom.delete(oid);
                c.commit();
                check(!SHARED.contains(tenant), tenant + ": large objects were not refused in shared placement");
            } catch (SQLException e) {
                check("42501".equals(e.getSQLState()) && SHARED.contains(tenant),
                    tenant + ": large object failed: " + e.getSQLState() + " " + e.getMessage());
                c.rollback();
            }
            c.setAutoCommit(true);

            try (Statement st = c.createStatement()) {
                st.execute("");
                st.execute("ROLLBACK");
                SQLWarning w = st.getWarnings();
                boolean seen = false;
                for (; w != null; w = w.getNextWarning()) {
                    seen |= w.getMessage().contains("no transaction in progress");
                }
                check(seen, tenant + ": notice");
                // The client drops its statements; pgjdbc re-prepares them.
                st.execute("DEALLOCATE ALL");
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after DEALLOCATE ALL");
                // In shared placement pgtenant sets the tenant context again after DISCARD ALL.
                st.execute("DISCARD ALL");
                check(own(own, prefix).equals(sorted(mine)), tenant + ": own rows after DISCARD ALL");
            }
            checkRows(tenant, allRows(c), seeds, "last read");
            own.close();
        }

        // A tiny statement cache: pgjdbc Closes the statements it evicts.
        try (Connection c = connect(tenant, 2)) {
            for (int r = 0; r < 3; r++) {
                for (int k = 0; k < 4; k++) {
                    try (PreparedStatement ps = c.prepareStatement(
                            "SELECT count(*) FROM items WHERE name LIKE ? AND " + k + " = " + k)) {
                        ps.setString(1, prefix + "%");
                        try (ResultSet rs = ps.executeQuery()) {
                            check(rs.next() && rs.getInt(1) == mine.size(), tenant + ": evicting cache " + r + "." + k);
                        }
                    }
                }
            }
        }
        return mine;
    }

    // A prepared SELECT * on every server connection of the tenant's pool, then ALTER TABLE:
    // PostgreSQL refuses the old plan (0A000) and pgjdbc, in autocommit, prepares the statement
    // again and retries once by itself. Through pgtenant that retry must work whichever server
    // connection it lands on.
    static void stalePlan(String tenant) throws Exception {
        List<Connection> cs = new ArrayList<>();
        List<PreparedStatement> ps = new ArrayList<>();
        try {
            for (int i = 0; i < 4; i++) {
                cs.add(connect(tenant, 256));
            }
            try (Statement st = cs.get(0).createStatement()) {
                st.execute("CREATE TABLE stale (a int); INSERT INTO stale VALUES (1)");
            }
            // The last two clients in autocommit; then two overlapping transactions, so that
            // both server connections prepare the statement.
            cs.get(0).setAutoCommit(false);
            cs.get(1).setAutoCommit(false);
            for (int i : new int[] {2, 3, 0, 1}) {
                PreparedStatement p = cs.get(i).prepareStatement("SELECT * FROM stale");
                for (int k = 0; k < 2; k++) {
                    try (ResultSet rs = p.executeQuery()) {
                        check(rs.next() && rs.getMetaData().getColumnCount() == 1, tenant + ": stale table before");
                    }
                }
                ps.add(p);
            }
            cs.get(0).commit();
            cs.get(1).commit();
            cs.get(0).setAutoCommit(true);
            cs.get(1).setAutoCommit(true);
            try (Statement st = cs.get(0).createStatement()) {
                st.execute("ALTER TABLE stale ADD COLUMN b int DEFAULT 2");
            }
            for (int round = 0; round < 2; round++) {
                for (PreparedStatement p : ps) {
                    try (ResultSet rs = p.executeQuery()) {
                        boolean row = rs.next();
                        int columns = rs.getMetaData().getColumnCount();
                        check(row && columns == 2 && rs.getInt(2) == 2,
                            tenant + ": stale table after ALTER TABLE, round " + round + ": row " + row
                                + ", " + columns + " columns");
                    }
                }
            }
        } finally {
            for (Connection c : cs) {
                c.close();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        List<String> tenants = new ArrayList<>();
        for (String t : System.getenv("PGT_TENANTS").split(",")) {
            tenants.add(t.split(":")[0]);
            if (t.endsWith(":shared")) {
                SHARED.add(t.split(":")[0]);
            }
        }
        List<String> failures = new CopyOnWriteArrayList<>();
        Map<String, List<String>> written = new ConcurrentHashMap<>();
        List<Thread> threads = new ArrayList<>();
        for (String t : tenants) {
            written.put(t, new CopyOnWriteArrayList<>());
            for (int i = 0; i < CLIENTS; i++) {
                final int n = i;
                Thread th = new Thread(() -> {
                    try {
                        written.get(t).addAll(client(t, n));
                    } catch (Throwable e) {
                        failures.add(t + " client " + n + ": " + e);
                    }
                });
                th.start();
                threads.add(th);
            }
        }
        for (Thread th : threads) {
            th.join(100_000);
            if (th.isAlive()) {
                failures.add("a client did not finish within 100 s");
                break;
            }
        }
        for (String t : tenants) {
            if (failures.isEmpty() && !SHARED.contains(t)) {
                try {
                    stalePlan(t);
                } catch (SQLException e) {
                    failures.add(t + ": stale plan: " + e.getSQLState() + " " + e.getMessage());
                }
            }
        }
        if (failures.isEmpty()) {
            for (String t : tenants) {
                try (Connection c = connect(t, 256)) {
                    List<String> expected = new ArrayList<>(written.get(t));
                    expected.add(t + "-seed-1");
                    expected.add(t + "-seed-2");
                    Collections.sort(expected);
                    List<String> names = new ArrayList<>();
                    boolean foreign = false;
                    for (String[] r : allRows(c)) {
                        names.add(r[1]);
                        foreign |= !r[0].equals(t);
                    }
                    if (foreign || !names.equals(expected)) {
                        failures.add(t + ": final rows " + names + " != " + expected);
                    } else {
                        check(true, "final");
                    }
                }
            }
        }
        if (!failures.isEmpty()) {
            for (String f : failures) {
                System.err.println("FAIL " + f);
            }
            System.exit(1);
        }
        System.out.println("ok pgjdbc " + checks.get());
        System.exit(0);
    }
}
