//! Citus on test instances. Debian 12 has no Citus package and the project
//! never builds or downloads it, so tests use an installed Citus or skip,
//! loudly and counted.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::service_user::pg_program;
use super::{start_instances, PgInstance, PgOptions};
use crate::harness::process::run_captured;

/// Node settings Citus needs (citus.md, "Node config"): preloading, logical
/// decoding for shard moves, and headroom for its background workers.
pub(super) const CITUS_SETTINGS: &[(&str, &str)] = &[
    ("shared_preload_libraries", "citus"),
    ("wal_level", "logical"),
    ("max_worker_processes", "32"),
    ("max_replication_slots", "32"),
    ("max_wal_senders", "32"),
    ("citus.max_background_task_executors_per_node", "4"),
];

/// Set to a directory, each skip of a Citus test is recorded there (one
/// line with the test's name in `citus-skips`); `run.sh` counts the lines.
pub const SKIP_RECORD_VAR: &str = "SHARDFORM_SKIP_RECORD_DIR";
/// Set to 1, the harness acts as if Citus were not installed (how run.sh's
/// skip count is checked on a machine that has Citus).
pub const PRETEND_NO_CITUS_VAR: &str = "SHARDFORM_PRETEND_NO_CITUS";

/// Whether `citus.so` is in the PostgreSQL installation's library directory.
pub fn citus_installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        std::env::var_os(PRETEND_NO_CITUS_VAR).is_none_or(|v| v != "1") && citus_library().is_file()
    })
}

/// Appends the test's name to the skip record, when one is asked for.
fn record_skip(test_name: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os(SKIP_RECORD_VAR) else {
        return;
    };
    let path = PathBuf::from(dir).join("citus-skips");
    // One write of one short line with O_APPEND: lines of parallel tests never mix.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{test_name}\n").as_bytes()));
    if let Err(e) = written {
        panic!("cannot record the skip of {test_name} in {}: {e}", path.display());
    }
}

/// Where Citus would be installed (`pg_config --pkglibdir`/citus.so).
pub fn citus_library() -> PathBuf {
    let mut pg_config = Command::new(pg_program("pg_config"));
    pg_config.arg("--pkglibdir");
    let out = run_captured(&mut pg_config, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "pg_config --pkglibdir failed: {}",
        out.stderr
    );
    PathBuf::from(out.stdout.trim()).join("citus.so")
}

/// For tests that need Citus: true if it is installed; otherwise prints a
/// skip notice with the running count of skipped tests and returns false.
///
/// ```ignore
/// if !require_citus("citus_cluster_scale_in") { return; }
/// ```
pub fn require_citus(test_name: &str) -> bool {
    static SKIPPED: AtomicUsize = AtomicUsize::new(0);
    if citus_installed() {
        return true;
    }
    let skipped = SKIPPED.fetch_add(1, Ordering::Relaxed) + 1;
    record_skip(test_name);
    eprintln!(
        "SKIPPED {test_name}: Citus is not installed ({} is missing); \
         {skipped} Citus test(s) skipped so far in this run",
        citus_library().display()
    );
    false
}

/// A coordinator and workers, all configured for Citus and running, but
/// without `CREATE EXTENSION` (that is the provider's job).
pub struct CitusCluster {
    pub coordinator: PgInstance,
    pub workers: Vec<PgInstance>,
}

impl CitusCluster {
    /// Starts 1 + `workers` instances concurrently. Panics if Citus is not
    /// installed (check [`require_citus`] first).
    pub fn start(workers: usize) -> CitusCluster {
        let mut nodes = start_instances(1 + workers, &PgOptions::citus());
        let coordinator = nodes.remove(0);
        CitusCluster {
            coordinator,
            workers: nodes,
        }
    }

    /// The coordinator, then the workers.
    pub fn nodes(&self) -> impl Iterator<Item = &PgInstance> {
        std::iter::once(&self.coordinator).chain(&self.workers)
    }
}
