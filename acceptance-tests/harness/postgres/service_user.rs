//! PostgreSQL refuses to run as root. When the tests run as root, its
//! programs run as the `postgres` user and the directories they write must
//! belong to it; otherwise they run as the invoking user.

use std::env;
use std::ffi::{CStr, CString};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SERVICE_USER: &str = "postgres";
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Points the harness at another PostgreSQL installation.
const BIN_DIR_VAR: &str = "SHARDFORM_PG_BINDIR";

/// The account PostgreSQL programs run as (only when we are root).
struct Account {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The path of a PostgreSQL program such as `initdb`.
pub fn pg_program(name: &str) -> PathBuf {
    env::var_os(BIN_DIR_VAR)
        .map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from)
        .join(name)
}

/// A command for a PostgreSQL program, switched to the service user when we
/// are root. Switching in the child itself (rather than through `runuser`)
/// keeps the program our direct child, so that we can reap it.
pub fn service_command(program: &str) -> Command {
    let mut cmd = Command::new(pg_program(program));
    // The service user may not be allowed into the test's working directory.
    cmd.current_dir("/");
    if let Some(account) = service_account() {
        cmd.uid(account.uid)
            .gid(account.gid)
            .env("HOME", &account.home)
            .env("USER", SERVICE_USER)
            .env("LOGNAME", SERVICE_USER);
    }
    cmd
}

/// Gives `path` to the service user; a no-op unless we are root.
pub fn hand_over(path: &Path) {
    if let Some(account) = service_account() {
        chown(path, Some(account.uid), Some(account.gid))
            .unwrap_or_else(|e| panic!("cannot chown {} to {SERVICE_USER}: {e}", path.display()));
    }
}

fn service_account() -> Option<&'static Account> {
    static ACCOUNT: OnceLock<Option<Account>> = OnceLock::new();
    ACCOUNT
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            root.then(|| {
                lookup_account(SERVICE_USER).unwrap_or_else(|| {
                    panic!("running as root, but there is no `{SERVICE_USER}` user to run PostgreSQL as")
                })
            })
        })
        .as_ref()
}

fn lookup_account(name: &str) -> Option<Account> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut strings = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the stated size; the
    // reentrant variant keeps the result in our own buffer.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            strings.as_mut_ptr(),
            strings.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points to a NUL-terminated string in `strings`.
    let home = unsafe { CStr::from_ptr(entry.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Some(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        home: PathBuf::from(home),
    })
}
