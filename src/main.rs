//! The `pgtenant` command: `run`, `demo`, `hash-password`, `rls`, `check`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "pgtenant",
    version,
    about = "A tenant-aware PostgreSQL proxy and connection pooler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        #[arg(long, short, default_value = "config/pgtenant.toml")]
        config: PathBuf,
    },
    /// Start throwaway PostgreSQL clusters with demo tenants and the proxy in front of them.
    Demo {
        /// Port for the proxy.
        #[arg(long, default_value_t = 6432)]
        port: u16,
    },
    /// Print a SCRAM-SHA-256 verifier for a password read from standard input.
    HashPassword,
    /// Print the SQL that makes a table tenant-safe under shared placement (forced row-level
    /// security, a policy on the tenant setting, a column default). Apply it with psql.
    Rls(pgtenant::audit::rls::RlsOptions),
    /// Connect to every shard hosting a shared database and report what would let a tenant
    /// see another's rows. Exit code: 0 nothing found, 1 findings, 2 config error or a shard
    /// that could not be audited.
    Check {
        #[arg(long, short, default_value = "config/pgtenant.toml")]
        config: PathBuf,
    },
}

/// Log lines to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON objects.
fn init_logs(json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword => {
            init_logs(false);
            hash_password()
        }
        Command::Run { config: path } => {
            let config = match pgtenant::config::Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("pgtenant: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(config.log_json());
            // The file is read again at start (and on every reload) so that one path is used.
            drop(config);
            // The proxy starts on this thread's single-threaded runtime, the first of its
            // `server.workers` lanes, and starts a thread for each of the others.
            with_runtime(async move {
                pgtenant::server::run_until_signal(&path)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Rls(opts) => match pgtenant::audit::rls::generate(&opts) {
            Ok(sql) => {
                print!("{sql}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pgtenant: {e}");
                ExitCode::from(2)
            }
        },
        Command::Check { config } => {
            init_logs(false);
            check(&config)
        }
        Command::Demo { port } => {
            init_logs(false);
            with_runtime(async move { pgtenant::demo::run(port).await })
        }
    }
}

/// A single-threaded runtime, or the exit code `failure` after saying why there is none.
fn runtime(failure: ExitCode) -> Result<tokio::runtime::Runtime, ExitCode> {
    pgtenant::server::runtime_builder()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pgtenant: could not start the runtime: {e}");
            failure
        })
}

fn with_runtime<F: std::future::Future<Output = Result<(), String>>>(f: F) -> ExitCode {
    let rt = match runtime(ExitCode::FAILURE) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgtenant: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pgtenant check`: 0 nothing found, 1 findings, 2 config error or a shard not audited.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match pgtenant::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgtenant: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(ExitCode::from(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = rt.block_on(pgtenant::audit::check::run(&config));
    print!("{}", report.render());
    ExitCode::from(report.exit_code())
}

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        eprintln!("pgtenant: could not read the password from standard input");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("pgtenant: empty password");
        return ExitCode::FAILURE;
    }
    println!("{}", pgtenant::hash_password(password));
    ExitCode::SUCCESS
}
