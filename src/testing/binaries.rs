//! Finding the PostgreSQL server binaries: `PGTENANT_PG_BIN`, `pg_config --bindir`, `PATH`, or
//! `/usr/lib/postgresql/<version>/bin` (newest first).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
}

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found.\n\
Install them, e.g. on Debian/Ubuntu: sudo apt-get install postgresql\n\
or point PGTENANT_PG_BIN at the directory that holds initdb.";

impl PgBinaries {
    pub fn find() -> Result<PgBinaries, String> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(dir) = std::env::var("PGTENANT_PG_BIN") {
            candidates.push(dir.into());
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versioned.into_iter().map(|(_, p)| p));
        candidates
            .into_iter()
            .find(|d| has_server(d))
            .map(|d| PgBinaries {
                bin_dir: std::fs::canonicalize(&d).unwrap_or(d),
            })
            .ok_or_else(|| INSTALL_HINT.to_owned())
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        let own = self.bin_dir.join(name);
        if own.exists() {
            return own;
        }
        // psql and pgbench may live in /usr/bin when only the client package's wrapper is there.
        PathBuf::from(name)
    }
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}
