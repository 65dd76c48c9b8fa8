//! What the data directory and /proc say about a postmaster, and stopping it
//! with `pg_ctl`. Works for any postmaster, whoever started it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::service_user::service_command;
use crate::harness::process::try_run_captured;

const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Line numbers (1-based) in `postmaster.pid`, as in PostgreSQL's miscadmin.h.
const PID_LINE: usize = 1;
const STATUS_LINE: usize = 8;

/// The `-m` modes of `pg_ctl stop` the harness uses.
#[derive(Clone, Copy, Debug)]
pub enum Shutdown {
    Fast,
    Immediate,
}

impl Shutdown {
    fn mode(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

/// The PID in `postmaster.pid`, if that process is alive.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    pid_file_line(data_dir, PID_LINE)?
        .parse()
        .ok()
        .filter(|&pid| process_alive(pid))
}

/// True once the postmaster with `pid` accepts connections: `pg_ctl -w`
/// waits for the same status ("standby" for a hot standby).
pub fn accepts_connections(data_dir: &Path, pid: u32) -> bool {
    let owner = pid_file_line(data_dir, PID_LINE);
    let status = pid_file_line(data_dir, STATUS_LINE);
    // A stale file from a killed postmaster may still say "ready".
    owner == Some(pid.to_string()) && matches!(status.as_deref(), Some("ready" | "standby"))
}

/// `pg_ctl stop -m MODE`, waiting for the shutdown to finish.
pub fn pg_ctl_stop(data_dir: &Path, shutdown: Shutdown) -> Result<(), String> {
    let mut pg_ctl = service_command("pg_ctl");
    pg_ctl
        .arg("stop")
        .arg("-D")
        .arg(data_dir)
        .args(["-m", shutdown.mode(), "-w"])
        .args(["-t", &STOP_TIMEOUT.as_secs().to_string()]);
    // pg_ctl gives up by itself; the margin only guards against a hang.
    let out = try_run_captured(&mut pg_ctl, STOP_TIMEOUT + Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctl stop -m {} failed: {}{}",
            shutdown.mode(),
            out.stdout,
            out.stderr
        ))
    }
}

/// Whether `pid` runs. A zombie does not count: here nobody may reap an
/// orphaned postmaster, so a dead one can linger as a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => process_state(&stat).is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The processes whose parent is `pid` (a postmaster's backends and workers).
pub fn child_pids(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&candidate| {
            fs::read_to_string(format!("/proc/{candidate}/stat"))
                .is_ok_and(|stat| parent_pid(&stat) == Some(pid))
        })
        .collect()
}

fn pid_file_line(data_dir: &Path, line: usize) -> Option<String> {
    let contents = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    contents
        .lines()
        .nth(line - 1)
        .map(|text| text.trim().to_owned())
}

/// `/proc/PID/stat` is "PID (COMM) STATE PPID ..."; COMM may hold spaces
/// and parentheses, so fields are counted after the last ')'.
fn fields_after_command(stat: &str) -> impl Iterator<Item = &str> {
    let rest = stat.rfind(')').map_or("", |end| &stat[end + 1..]);
    rest.split_whitespace()
}

fn process_state(stat: &str) -> Option<char> {
    fields_after_command(stat).next()?.chars().next()
}

fn parent_pid(stat: &str) -> Option<i32> {
    fields_after_command(stat).nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let stat = "4242 (postgres: a (b) c) S 4200 4242 4242 0 -1";
        assert_eq!(process_state(stat), Some('S'));
        assert_eq!(parent_pid(stat), Some(4200));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id() as i32));
    }
}
