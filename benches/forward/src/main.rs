//! Byte-for-byte forwarders between pgbench and PostgreSQL, one server connection per client,
//! on four I/O cores: `mio` (one thread, its own event loop), `mio2` (two threads, each with its
//! own event loop; the accepting thread deals connections out in turn), `tokio1` (tokio's
//! single-threaded scheduler) and `tokio` (tokio's work-stealing scheduler, two workers).
//! `benches/side_by_side.sh` runs them as the targets `forward-*`, beside PgBouncer in session
//! mode: what each core costs per transaction, before any pooling or protocol work.
//!
//! Usage: `forward mio|mio2|tokio1|tokio LISTEN_PORT UPSTREAM_PORT` (127.0.0.1 both).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

const BUF: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, core, listen, upstream] = args.as_slice() else {
        eprintln!("usage: forward mio|mio2|tokio1|tokio LISTEN_PORT UPSTREAM_PORT");
        std::process::exit(2);
    };
    let addr =
        |port: &str| -> SocketAddr { format!("127.0.0.1:{port}").parse().expect("a port number") };
    let (listen, upstream) = (addr(listen), addr(upstream));
    match core.as_str() {
        "mio" => event_loops(listen, upstream, 1),
        "mio2" => event_loops(listen, upstream, 2),
        "tokio1" => tokio_tasks(listen, upstream, 1),
        "tokio" => tokio_tasks(listen, upstream, 2),
        other => panic!("unknown core {other}"),
    }
}

/// A task per client on tokio (`workers` 1: the single-threaded scheduler).
fn tokio_tasks(listen: SocketAddr, upstream: SocketAddr, workers: usize) {
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let (mut cbuf, mut sbuf) = (vec![0u8; BUF], vec![0u8; BUF]);
                loop {
                    tokio::select! {
                        biased;
                        r = sr.read(&mut sbuf) => match r {
                            Ok(n) if n > 0 => if cw.write_all(&sbuf[..n]).await.is_err() { return },
                            _ => return,
                        },
                        r = cr.read(&mut cbuf) => match r {
                            Ok(n) if n > 0 => if sw.write_all(&cbuf[..n]).await.is_err() { return },
                            _ => return,
                        },
                    }
                }
            });
        }
    });
}

/// `threads` event loops, each serving the clients the accepting thread hands it.
fn event_loops(listen: SocketAddr, upstream: SocketAddr, threads: usize) {
    let mut lanes = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel::<std::net::TcpStream>();
        let poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), NEW_CLIENTS).expect("waker"));
        std::thread::spawn(move || event_loop(poll, &rx, upstream));
        lanes.push((tx, waker));
    }
    let listener = std::net::TcpListener::bind(listen).expect("bind");
    for (i, client) in listener.incoming().enumerate() {
        let Ok(client) = client else { continue };
        let (tx, waker) = &lanes[i % threads];
        tx.send(client).expect("lane alive");
        waker.wake().expect("wake");
    }
}

/// The waker's token; client k is token 2k, its server connection 2k + 1.
const NEW_CLIENTS: Token = Token(usize::MAX);

fn event_loop(mut poll: Poll, new: &mpsc::Receiver<std::net::TcpStream>, upstream: SocketAddr) {
    let mut pairs: Vec<Option<(TcpStream, TcpStream)>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; BUF];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            // callgrind_control and the like interrupt the wait.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        for event in events.iter() {
            if event.token() == NEW_CLIENTS {
                while let Ok(client) = new.try_recv() {
                    if let Some(pair) = connect(&poll, client, upstream, pairs.len()) {
                        pairs.push(Some(pair));
                    }
                }
                continue;
            }
            let k = event.token().0 / 2;
            let Some((client, server)) = pairs[k].as_mut() else {
                continue;
            };
            let (from, to) = if event.token().0 % 2 == 0 {
                (client, server)
            } else {
                (server, client)
            };
            if !forward(from, to, &mut buf) {
                pairs[k] = None;
            }
        }
    }
}

/// Registers `client` and a new connection to `upstream` as pair `k`.
fn connect(
    poll: &Poll,
    client: std::net::TcpStream,
    upstream: SocketAddr,
    k: usize,
) -> Option<(TcpStream, TcpStream)> {
    let server = std::net::TcpStream::connect(upstream).ok()?;
    for s in [&client, &server] {
        s.set_nodelay(true).ok()?;
        s.set_nonblocking(true).ok()?;
    }
    let (mut client, mut server) = (TcpStream::from_std(client), TcpStream::from_std(server));
    let registry = poll.registry();
    registry
        .register(&mut client, Token(2 * k), Interest::READABLE)
        .ok()?;
    registry
        .register(&mut server, Token(2 * k + 1), Interest::READABLE)
        .ok()?;
    Some((client, server))
}

/// Moves what `from` has to `to`; false once either side is gone. (pgbench's messages are
/// small: a write that would block is treated as a failure, which it never is here.)
fn forward(from: &mut TcpStream, to: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match from.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return false;
                }
                if n < buf.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}
