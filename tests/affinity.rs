//! `server.cpu_affinity`: each worker thread (lane) pinned to a CPU of its own, and a new
//! client steered to the lane pinned to the CPU its packets arrive on. A test binary of its
//! own: it looks at the process's threads.

mod common;
use common::*;

use std::sync::mpsc;

/// The CPUs a thread may run on, from its `/proc` status (`Cpus_allowed_list`: "0-3,6").
fn allowed_cpus(status: &str) -> Vec<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().expect("a CPU"), b.parse().expect("a CPU"));
        cpus.extend(a..=b);
    }
    cpus
}

/// The allowed CPUs of this process's thread named `name`.
fn thread_cpus(name: &str) -> Vec<usize> {
    let task = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| t.ok())
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.trim() == name))
        .unwrap_or_else(|| panic!("a thread named {name}"));
    allowed_cpus(&std::fs::read_to_string(task.path().join("status")).expect("status"))
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set, `cpu` is a CPU this process may run
    // on (below CPU_SETSIZE), and `sched_setaffinity` only reads the set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "pinned to CPU {cpu}");
}

/// A client that connects and queries from a thread pinned to `cpu` (so its packets arrive
/// on that CPU), sends its local port, and stays connected until `done` is dropped.
fn client_on_cpu(
    cpu: usize,
    config: tokio_postgres::Config,
    addr: std::net::SocketAddr,
    port: mpsc::Sender<u16>,
    done: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        pin_to(cpu);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let local = tcp.local_addr().expect("local address").port();
            let (client, conn) = config
                .connect_raw(tcp, tokio_postgres::NoTls)
                .await
                .expect("login");
            let driver = tokio::spawn(conn);
            client.simple_query("SELECT 1").await.expect("query");
            port.send(local).expect("port sent");
            // Waits (blocking this thread alone) until the test has looked.
            let _ = done.recv();
            drop(client);
            let _ = driver.await;
        });
    })
}

/// `workers = 2`, `cpu_affinity = "on"`: the worker thread is pinned to the second CPU the
/// process may run on (the first again on a one-CPU machine), a client whose packets come
/// from a CPU is served by the lane pinned to it (`SHOW CLIENTS`, column `lane`), and it
/// gets its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_served_by_the_lane_pinned_to_their_cpu() {
    let db = unique("affinity");
    create_db(
        &db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('row');",
    );
    let toml = format!(
        "{}\n[users.ops]\npassword = \"{}\"\nadmin = true\n",
        config_text(&tenant_toml("acme", "database", &db, "")).replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nworkers = 2\ncpu_affinity = \"on\"",
        ),
        verifier()
    );
    let allowed = allowed_cpus(&std::fs::read_to_string("/proc/self/status").expect("status"));
    let proxy = start_proxy(&toml).await;
    // Lane 0 is the thread the proxy was started on (here the test's runtime, which it does
    // not pin); lane 1 is pinned to the second allowed CPU.
    let lane_cpus = [allowed[0], allowed[1 % allowed.len()]];
    assert_eq!(thread_cpus("pgtenant-lane-1"), vec![lane_cpus[1]]);

    for &cpu in &lane_cpus {
        // The first lane pinned to it (both lanes share the one CPU of a one-CPU machine).
        let expected = lane_cpus.iter().position(|&c| c == cpu).expect("a lane");
        let (port_tx, port_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let client = client_on_cpu(
            cpu,
            client_config(&proxy, "app.acme", "acme"),
            proxy.addr(),
            port_tx,
            done_rx,
        );
        let port = tokio::task::spawn_blocking(move || port_rx.recv().expect("the client's port"))
            .await
            .expect("join");
        let (ok, clients, err) = psql(&proxy, "user=ops dbname=pgtenant", "SHOW CLIENTS");
        assert!(ok, "{err}");
        let row = clients
            .lines()
            .find(|l| l.split('|').nth(7) == Some(port.to_string().as_str()))
            .unwrap_or_else(|| panic!("the client on port {port} in SHOW CLIENTS: {clients}"));
        assert_eq!(
            row.rsplit('|').next(),
            Some(expected.to_string().as_str()),
            "a client on CPU {cpu} (lanes pinned to {lane_cpus:?}): {row}"
        );
        drop(done_tx);
        tokio::task::spawn_blocking(move || client.join())
            .await
            .expect("join")
            .expect("the client thread");
    }

    // And a client of any CPU gets its rows through the pinned lanes.
    let c = connect(&proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&c).await, vec!["row".to_string()]);
    proxy.shutdown().await;
}
