//! Running the group's programs on this machine: as the unprivileged service
//! user when the provider runs as root, in a session of their own (setsid)
//! so Terraform's Ctrl-C and the provider's exit never reach them.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::Command;

/// PostgreSQL, repmgr and pgpool refuse to run as root; they run as this user.
pub const SERVICE_USER: &str = "postgres";
/// Lines of a failed program's output quoted in the error.
const OUTPUT_TAIL_LINES: usize = 25;

#[derive(Debug)]
pub enum LocalError {
    NoServiceUser,
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    Spawn {
        program: String,
        error: io::Error,
    },
    Failed {
        program: String,
        status: String,
        output: String,
    },
    TimedOut {
        program: String,
        after: Duration,
    },
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalError::NoServiceUser => write!(
                f,
                "the provider runs as root, but there is no `{SERVICE_USER}` user to run PostgreSQL, repmgr and pgpool as"
            ),
            LocalError::Io { path, action, error } => write!(f, "cannot {action} {}: {error}", path.display()),
            LocalError::Spawn { program, error } => write!(f, "cannot start {program}: {error}"),
            LocalError::Failed { program, status, output } => {
                write!(f, "{program} failed ({status})")?;
                if !output.is_empty() {
                    write!(f, ":\n{output}")?;
                }
                Ok(())
            }
            LocalError::TimedOut { program, after } => write!(f, "{program} did not finish within {after:?}"),
        }
    }
}

impl std::error::Error for LocalError {}

pub fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> LocalError {
    let path = path.to_path_buf();
    move |error| LocalError::Io {
        path,
        action,
        error,
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The account programs run as: `None` when the provider is not root (they
/// run as the invoking user).
pub fn service_account() -> Result<Option<&'static Account>, LocalError> {
    static ACCOUNT: OnceLock<Option<Option<Account>>> = OnceLock::new();
    let found = ACCOUNT.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            Some(lookup_account(SERVICE_USER))
        } else {
            None
        }
    });
    match found {
        None => Ok(None),
        Some(Some(account)) => Ok(Some(account)),
        Some(None) => Err(LocalError::NoServiceUser),
    }
}

fn lookup_account(name: &str) -> Option<Account> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut strings = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the stated size.
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

/// A command for `program`, as the service user, in a new session, with a
/// neutral working directory and no stdin.
fn service_command(program: &Path) -> Result<Command, LocalError> {
    let mut cmd = Command::new(program);
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .kill_on_drop(false);
    if let Some(account) = service_account()? {
        cmd.uid(account.uid)
            .gid(account.gid)
            .env("HOME", &account.home)
            .env("USER", SERVICE_USER)
            .env("LOGNAME", SERVICE_USER);
    }
    // Debian's PostgreSQL wrappers and libpq read these; ours must not leak in.
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSERVICE",
        "PGDATA",
    ] {
        cmd.env_remove(var);
    }
    // SAFETY: setsid, close_range, getrlimit and fcntl are async-signal-safe
    // and nothing here allocates. setsid makes the child (and what it starts)
    // a session of its own, away from Terraform's process group.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            close_inherited_descriptors_on_exec();
            Ok(())
        });
    }
    Ok(cmd)
}

/// Marks every descriptor above stderr close-on-exec. Terraform hands its
/// providers its own stdout and stderr as extra descriptors; a daemon that
/// inherited them would hold Terraform's output open for as long as it runs
/// (`terraform apply | tee log` would never end). Close-on-exec rather than
/// closed: the standard library reports a failed exec through one of them.
///
/// # Safety
/// Only for a freshly forked child before exec: it changes descriptor flags
/// process-wide.
unsafe fn close_inherited_descriptors_on_exec() {
    // Linux 5.11+: one call.
    let done = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0;
    if done {
        return;
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let highest = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(65_536) as libc::c_int
    } else {
        1024
    };
    for fd in 3..highest {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

fn display_program(program: &Path, args: &[&OsStr]) -> String {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The subcommand words (`standby clone`) say which step failed; options do not.
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.starts_with('-') && !a.contains('/') && !a.contains('='))
        .take(2)
        .collect();
    if words.is_empty() {
        format!("`{name}`")
    } else {
        format!("`{name} {}`", words.join(" "))
    }
}

/// Runs a program to completion with its output captured. None of the
/// group's commands take a secret as an argument, so quoting output is safe.
pub async fn run(
    program: &Path,
    args: &[&OsStr],
    env: &[(&str, &OsStr)],
    timeout: Duration,
) -> Result<String, LocalError> {
    let shown = display_program(program, args);
    let mut cmd = service_command(program)?;
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    log::debug!("running {shown}");
    let child = cmd.spawn().map_err(|error| LocalError::Spawn {
        program: shown.clone(),
        error,
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|error| LocalError::Spawn {
            program: shown.clone(),
            error,
        })?,
        Err(_) => {
            return Err(LocalError::TimedOut {
                program: shown,
                after: timeout,
            })
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(LocalError::Failed {
            program: shown,
            status: output.status.to_string(),
            output: tail(&text, OUTPUT_TAIL_LINES),
        })
    }
}

/// Starts a long-running program detached: a shell in a new session starts
/// it in the background with output appended to `log`, and exits, so the
/// program's parent becomes init, not the provider.
pub async fn spawn_detached(program: &Path, args: &[&OsStr], log: &Path) -> Result<(), LocalError> {
    let mut all: Vec<&OsStr> = vec![
        OsStr::new("-c"),
        OsStr::new("log=\"$1\"; shift; \"$@\" >>\"$log\" 2>&1 </dev/null &"),
        OsStr::new("sh"),
        log.as_os_str(),
        program.as_os_str(),
    ];
    all.extend_from_slice(args);
    let shown = display_program(program, args);
    let mut cmd = service_command(Path::new("/bin/sh"))?;
    cmd.args(&all).stdout(Stdio::null()).stderr(Stdio::null());
    let status = cmd.status().await.map_err(|error| LocalError::Spawn {
        program: shown.clone(),
        error,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(LocalError::Failed {
            program: shown,
            status: status.to_string(),
            output: String::new(),
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Gives `path` to the service user (a no-op unless the provider is root).
pub fn hand_over(path: &Path) -> Result<(), LocalError> {
    if let Some(account) = service_account()? {
        chown(path, Some(account.uid), Some(account.gid))
            .map_err(io_error(path, "change the owner of"))?;
    }
    Ok(())
}

/// Creates a directory (and parents) owned by the service user, mode 0700.
pub fn make_dir(path: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(path).map_err(io_error(path, "create"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error(path, "set the mode of"))?;
    hand_over(path)
}

/// Writes a file owned by the service user with `mode`; returns whether its
/// content changed.
pub fn write_file(path: &Path, content: &str, mode: u32) -> Result<bool, LocalError> {
    let changed = std::fs::read_to_string(path)
        .map(|old| old != content)
        .unwrap_or(true);
    if changed {
        let tmp = path.with_extension("shardform-tmp");
        std::fs::write(&tmp, content).map_err(io_error(&tmp, "write"))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io_error(&tmp, "set the mode of"))?;
        hand_over(&tmp)?;
        std::fs::rename(&tmp, path).map_err(io_error(path, "replace"))?;
    }
    Ok(changed)
}

/// The pid in the first line of a pid file, if that process is alive and
/// its command name is `comm` (guards against a reused pid).
pub fn live_pid(pid_file: &Path, comm: &str) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    // pgpool pads its pid file with NUL bytes: take the leading digits.
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let pid: i32 = digits.parse().ok()?;
    process_named(pid, comm).then_some(pid)
}

pub fn process_named(pid: i32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
}

/// SIGTERM, then SIGKILL if it is still there after `grace`.
pub async fn terminate(pid: i32, comm: &str, grace: Duration) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = tokio::time::Instant::now() + grace;
    while process_named(pid, comm) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if process_named(pid, comm) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// An exclusive flock, held until dropped. The file is opened close-on-exec,
/// so no program started meanwhile inherits it.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Takes an exclusive flock on `path` (created, and handed to the service
/// user, if missing), waiting up to `within`. `Ok(None)` when it stayed held.
pub async fn lock_exclusive(path: &Path, within: Duration) -> Result<Option<FileLock>, LocalError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error(path, "open"))?;
    hand_over(path)?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // SAFETY: a valid open descriptor, owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(FileLock(file)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Random hex from the kernel, for the PCP password.
pub fn random_hex(bytes: usize) -> Result<String, LocalError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut buf = vec![0u8; bytes];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_error(path, "read"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// md5 of a password for pcp.conf, computed by `md5sum` reading stdin, so the
/// password never appears on a command line.
pub async fn md5_hex(secret: &str) -> Result<String, LocalError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| LocalError::Spawn {
            program: "`md5sum`".into(),
            error,
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(secret.as_bytes())
        .await
        .map_err(|error| LocalError::Spawn {
            program: "`md5sum`".into(),
            error,
        })?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|error| LocalError::Spawn {
            program: "`md5sum`".into(),
            error,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if out.status.success() && hex.len() == 32 {
        Ok(hex)
    } else {
        Err(LocalError::Failed {
            program: "`md5sum`".into(),
            status: out.status.to_string(),
            output: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_display_names_the_step_not_the_paths() {
        let args: Vec<&OsStr> = [
            "-f",
            "/x/repmgr.conf",
            "standby",
            "clone",
            "--fast-checkpoint",
        ]
        .iter()
        .map(OsStr::new)
        .collect();
        assert_eq!(
            display_program(Path::new("/usr/bin/repmgr"), &args),
            "`repmgr standby clone`"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
    }

    #[tokio::test]
    async fn md5_matches_known_value() {
        assert_eq!(
            md5_hex("abc").await.unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
