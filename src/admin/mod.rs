//! The admin console (DESIGN §6): clients connect to database `pgtenant` as a user marked
//! `admin = true` and speak the simple query protocol (`psql -h … -p 6432 -U admin pgtenant`).
//! [`command`] parses, [`show`] lists; the commands that act run here.

pub(crate) mod command;
pub(crate) mod show;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{
    ADMIN_SHUTDOWN, CONFIG_FILE_ERROR, ClientError, FEATURE_NOT_SUPPORTED, PROTOCOL_VIOLATION,
    SYNTAX_ERROR,
};
use crate::protocol::header::{Header, frontend, tag_name};
use crate::protocol::messages::{self, Severity};
use crate::server::Shared;
use crate::session::registry::{ClientState, Stop};
use crate::stream::ClientStream;
use command::Command;

/// The database name that reaches the console.
pub(crate) const DATABASE: &str = "pgtenant";

/// Longest console message accepted.
const MAX_MESSAGE: usize = 64 * 1024;

/// How often `PAUSE` looks whether running transactions have finished.
const PAUSE_POLL: Duration = Duration::from_millis(10);

/// Serves a logged-in admin until it leaves (or the proxy shuts down).
pub(crate) async fn run(shared: &Arc<Shared>, mut stream: ClientStream, user: &str) {
    let mut shutdown = shared.shutdown.clone();
    let mut inbuf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::with_capacity(4096);
    let mut failed_extended = false;
    loop {
        let msg = loop {
            if let Some(h) = Header::parse(&inbuf) {
                if !h.is_valid() || h.total() > MAX_MESSAGE {
                    let err = ClientError::new(PROTOCOL_VIOLATION, "invalid message length");
                    fatal(&mut stream, &mut out, &err).await;
                    return;
                }
                if inbuf.len() >= h.total() {
                    break inbuf.split_to(h.total());
                }
            }
            if *shutdown.borrow() {
                let err = ClientError::new(ADMIN_SHUTDOWN, "pgtenant is shutting down");
                fatal(&mut stream, &mut out, &err).await;
                return;
            }
            tokio::select! {
                r = stream.read_buf(&mut inbuf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                r = shutdown.changed() => if r.is_err() { return },
            }
        };
        match msg[0] {
            frontend::QUERY => {
                let body = &msg[Header::SIZE..];
                let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body));
                let statements: Vec<&str> = text
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if statements.is_empty() {
                    messages::empty_query(&mut out);
                }
                for sql in statements {
                    if let Err(e) = execute(shared, &mut out, sql).await {
                        tracing::info!(%user, command = sql, error = %e.message, "admin command failed");
                        messages::error_response(
                            &mut out,
                            Severity::Error,
                            e.code,
                            &e.message,
                            None,
                        );
                        break;
                    }
                    tracing::info!(%user, command = sql, "admin command");
                }
                messages::ready_for_query_idle(&mut out);
            }
            frontend::TERMINATE => return,
            frontend::SYNC => {
                failed_extended = false;
                messages::ready_for_query_idle(&mut out);
            }
            frontend::PARSE
            | frontend::BIND
            | frontend::DESCRIBE
            | frontend::EXECUTE
            | frontend::CLOSE
            | frontend::FLUSH => {
                if !failed_extended {
                    failed_extended = true;
                    messages::error_response(
                        &mut out,
                        Severity::Error,
                        FEATURE_NOT_SUPPORTED,
                        "the admin console speaks the simple query protocol only",
                        None,
                    );
                }
            }
            other => {
                let err = ClientError::new(
                    PROTOCOL_VIOLATION,
                    format!("unexpected message type {}", tag_name(other)),
                );
                fatal(&mut stream, &mut out, &err).await;
                return;
            }
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

async fn fatal(stream: &mut ClientStream, out: &mut BytesMut, err: &ClientError) {
    messages::error_response(out, Severity::Fatal, err.code, &err.message, None);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
}

/// Runs one command, appending its result to `out`.
async fn execute(shared: &Arc<Shared>, out: &mut BytesMut, sql: &str) -> Result<(), ClientError> {
    let cmd = command::parse(sql).map_err(|e| ClientError::new(SYNTAX_ERROR, e))?;
    let tag = match cmd {
        Command::Show(what) => {
            let table = show::show(what, shared, &shared.config());
            let columns: Vec<(&str, _)> = table.columns.iter().map(|(n, t)| (*n, *t)).collect();
            messages::row_description(out, &columns);
            for row in &table.rows {
                messages::data_row(out, row);
            }
            messages::command_complete(out, "SHOW");
            return Ok(());
        }
        Command::Pause(tenant) => {
            shared.holds.pause(tenant.as_deref());
            // Running transactions finish; new ones wait.
            loop {
                let running = shared.clients.all().iter().any(|c| {
                    c.state() == ClientState::Active
                        && tenant.as_deref().is_none_or(|t| *c.who.tenant == *t)
                        && c.who.mode == crate::config::PoolMode::Transaction
                });
                if !running {
                    break;
                }
                tokio::time::sleep(PAUSE_POLL).await;
            }
            "PAUSE"
        }
        Command::Resume(tenant) => {
            if !shared.holds.resume(tenant.as_deref()) {
                return Err(ClientError::new(
                    crate::error::OBJECT_NOT_IN_STATE,
                    match tenant {
                        Some(t) => format!("tenant \"{t}\" is not paused"),
                        None => "nothing is paused".to_owned(),
                    },
                ));
            }
            "RESUME"
        }
        Command::SuspendTenant(t) => {
            shared.holds.suspend(&t);
            let reason = ClientError::new(
                ADMIN_SHUTDOWN,
                format!("tenant \"{t}\" was suspended by an administrator"),
            );
            let n = shared
                .clients
                .stop_where(|c| *c.who.tenant == *t, Stop::AtBoundary, &reason);
            messages::notice(
                out,
                &format!("{n} client(s) of tenant \"{t}\" will be closed after their transaction"),
            );
            "SUSPEND"
        }
        Command::ResumeTenant(t) => {
            if !shared.holds.unsuspend(&t) {
                return Err(ClientError::new(
                    crate::error::OBJECT_NOT_IN_STATE,
                    format!("tenant \"{t}\" is not suspended from the console"),
                ));
            }
            "RESUME"
        }
        Command::Kill(t) => {
            let reason = ClientError::new(
                ADMIN_SHUTDOWN,
                format!("tenant \"{t}\": connection closed by an administrator (KILL)"),
            );
            let n = shared
                .clients
                .stop_where(|c| *c.who.tenant == *t, Stop::Now, &reason);
            messages::notice(out, &format!("closed {n} client(s) of tenant \"{t}\""));
            "KILL"
        }
        Command::Reload => {
            shared
                .reload()
                .map_err(|e| ClientError::new(CONFIG_FILE_ERROR, e.to_string()))?;
            "RELOAD"
        }
        Command::Shutdown => {
            shared.request_shutdown();
            "SHUTDOWN"
        }
    };
    messages::command_complete(out, tag);
    Ok(())
}
