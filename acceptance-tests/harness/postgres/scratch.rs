//! Every PostgreSQL file of one test process lives under
//! `/tmp/shardform-acc-PID`, so that the next test process can stop and
//! delete whatever a killed run left behind.
//!
//! `/tmp` rather than `$TMPDIR`: the service user must be able to reach it,
//! and unix socket paths must stay under 108 bytes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::OnceLock;

use super::postmaster::{pg_ctl_stop, process_alive, running_pid, Shutdown};
use super::DATA_DIR_NAME;

const SCRATCH_PARENT: &str = "/tmp";
const ROOT_PREFIX: &str = "shardform-acc-";

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// This process's scratch root, created (after reaping the roots of dead
/// test processes) on first use, and removed when the process exits.
pub fn process_root() -> &'static Path {
    ROOT.get_or_init(|| {
        reap_dead_roots();
        let root = create_root();
        // SAFETY: registers a plain function that takes no arguments.
        unsafe {
            libc::atexit(reap_own_root);
        }
        root
    })
}

/// Runs at normal exit, so that a passing run leaves nothing behind (not
/// even the template) until the next run.
extern "C" fn reap_own_root() {
    if let Some(root) = ROOT.get() {
        reap_root(root);
    }
}

fn create_root() -> PathBuf {
    let root = Path::new(SCRATCH_PARENT).join(format!("{ROOT_PREFIX}{}", process::id()));
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    // Traversable by the service user, whatever our umask.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", root.display()));
    root
}

fn reap_dead_roots() {
    let Ok(entries) = fs::read_dir(SCRATCH_PARENT) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let owner = entry.file_name().to_str().and_then(root_owner);
        if owner.is_some_and(|pid| pid != process::id() as i32 && !process_alive(pid)) {
            eprintln!(
                "harness: cleaning up {} left by a dead test process",
                entry.path().display()
            );
            reap_root(&entry.path());
        }
    }
}

/// The PID in a scratch root's name, e.g. 123 for `shardform-acc-123`.
fn root_owner(name: &str) -> Option<i32> {
    name.strip_prefix(ROOT_PREFIX)?.parse().ok()
}

/// Stops the postmasters still running from `root` and deletes it.
fn reap_root(root: &Path) {
    for entry in fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let data_dir = entry.path().join(DATA_DIR_NAME);
        if running_pid(&data_dir).is_some() {
            if let Err(e) = pg_ctl_stop(&data_dir, Shutdown::Immediate) {
                eprintln!("harness: {e}");
            }
        }
    }
    // Another test process may be reaping the same root right now.
    let _ = fs::remove_dir_all(root);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_names_carry_the_owner_pid() {
        assert_eq!(root_owner("shardform-acc-4242"), Some(4242));
        assert_eq!(root_owner("shardform-acc-"), None);
        assert_eq!(root_owner("shardform-tf-x-1-2"), None);
    }
}
