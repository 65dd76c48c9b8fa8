//! `initdb` is the slowest part of a new instance (seconds on two cores), so
//! it runs once per test process into a template that every instance copies.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::scratch::process_root;
use super::service_user::{hand_over, service_command};
use super::{DATA_DIR_NAME, INSTANCE_CONFIG_FILE};
use crate::harness::process::run_captured;

const INITDB_TIMEOUT: Duration = Duration::from_secs(300);
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings shared by every instance. Durability is off because test data is
/// thrown away; small shared_buffers because many instances run at once.
/// Per-instance settings come last, from the included file, and so win.
fn template_settings() -> String {
    format!(
        "
# --- shardform acceptance harness ---
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
synchronous_commit = off
shared_buffers = '32MB'
include '{INSTANCE_CONFIG_FILE}'
"
    )
}

/// Trust for the superuser and replication, locally and on loopback only.
const PG_HBA: &str = "\
# shardform acceptance harness: trust, loopback only
local   all          all                  trust
host    all          all    127.0.0.1/32  trust
local   replication  all                  trust
host    replication  all    127.0.0.1/32  trust
";

/// Copies the template data directory to `destination` (which must not
/// exist), preserving ownership and modes.
pub fn copy_template_to(destination: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(template_data_dir()).arg(destination);
    let out = run_captured(&mut cp, COPY_TIMEOUT);
    assert!(
        out.status.success(),
        "copying the template data dir failed: {}",
        out.stderr
    );
}

fn template_data_dir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(create_template)
}

fn create_template() -> PathBuf {
    let dir = process_root().join("template");
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    hand_over(&dir);
    let data_dir = dir.join(DATA_DIR_NAME);
    run_initdb(&data_dir);
    append(&data_dir.join("postgresql.conf"), &template_settings());
    fs::write(data_dir.join("pg_hba.conf"), PG_HBA).expect("cannot write the template pg_hba.conf");
    data_dir
}

fn run_initdb(data_dir: &Path) {
    let mut initdb = service_command("initdb");
    initdb
        .arg("-D")
        .arg(data_dir)
        .args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"]);
    let out = run_captured(&mut initdb, INITDB_TIMEOUT);
    assert!(
        out.status.success(),
        "initdb failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

fn append(file: &Path, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot append to {}: {e}", file.display()));
}
