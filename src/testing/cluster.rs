//! One throwaway PostgreSQL cluster. Stopped and deleted on drop, and by a watchdog process if
//! the owning process dies without dropping it (tests keep one cluster per test binary).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{PgBinaries, SUPERUSER_PASSWORD, free_port};

pub struct Cluster {
    bins: PgBinaries,
    dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    watchdog: Option<Child>,
    stopped: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    /// initdb + start on a free port. `name` only labels the temp dir.
    pub fn start(bins: &PgBinaries, name: &str) -> Result<Cluster, String> {
        let run_as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgtenant-{name}-"))
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        if run_as_postgres {
            chown_postgres(&dir)?;
        }
        let mut cluster = Cluster {
            bins: bins.clone(),
            dir,
            port: 0,
            run_as_postgres,
            watchdog: None,
            stopped: true,
        };
        cluster.init()?;
        cluster.watchdog = cluster.spawn_watchdog().ok();
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port().map_err(|e| e.to_string())?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.stopped = false;
                    return Ok(cluster);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: PathBuf) -> Command {
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn init(&self) -> Result<(), String> {
        let pwfile = self.dir.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).map_err(|e| e.to_string())?;
        if self.run_as_postgres {
            chown_postgres(&pwfile)?;
        }
        let out = self
            .command(self.bins.bin_dir.join("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=md5",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB",
            self.port,
            self.dir.display()
        );
        let out = self
            .command(self.bins.bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                log
            ));
        }
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), keeping the data.
    pub fn stop_immediate(&mut self) -> Result<(), String> {
        let out = self
            .command(self.bins.bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        self.stopped = true;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.pg_ctl_start()?;
        self.stopped = false;
        Ok(())
    }

    /// Runs SQL through `psql` as the superuser; returns unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bins.tool("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", database])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql failed on {database}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the watchdog-less way: used by Drop.
    fn stop_and_remove(&mut self) {
        if !self.stopped {
            let _ = self.stop_immediate();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A shell loop that outlives us by at most a second: when this process is gone it stops
    /// the server and removes the directory.
    fn spawn_watchdog(&self) -> std::io::Result<Child> {
        let pg_ctl = self.bins.bin_dir.join("pg_ctl");
        let stop = if self.run_as_postgres {
            format!(
                "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            )
        } else {
            format!(
                "'{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_and_remove();
    }
}

fn chown_postgres(path: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    if !status.success() {
        return Err(format!("chown postgres {} failed", path.display()));
    }
    Ok(())
}
