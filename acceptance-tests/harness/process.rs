//! Running external programs with captured output and a deadline.
//!
//! Every child gets its own process group so that a timeout can kill the
//! whole tree (Terraform and the provider processes it started), not just the
//! direct child.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::wait::poll_until;

/// How long to wait for output after the child exited: a daemon it started
/// may hold the pipe open forever, and what was printed so far is enough.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What a finished program printed.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The output pipes were still open after the grace period: a process
    /// the program started (a daemon) inherited them. `terraform apply | tee`
    /// would then never end.
    pub output_held_open: bool,
}

impl Captured {
    /// The exit code, or -1 when the program died from a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Why a program did not run to completion.
#[derive(Debug)]
pub enum RunError {
    Spawn {
        command: String,
        error: io::Error,
    },
    TimedOut {
        command: String,
        after: Duration,
        stdout: String,
        stderr: String,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { command, error } => write!(f, "cannot start {command}: {error}"),
            RunError::TimedOut {
                command,
                after,
                stdout,
                stderr,
            } => write!(
                f,
                "{command} timed out after {after:?} and was killed\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            ),
        }
    }
}

/// Runs `cmd` to completion with stdout and stderr captured, killing its
/// process group if it runs longer than `timeout`.
pub fn try_run_captured(cmd: &mut Command, timeout: Duration) -> Result<Captured, RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .spawn()
        .map_err(|error| RunError::Spawn {
            command: command.clone(),
            error,
        })?;
    let stdout = PipeCollector::start(child.stdout.take().expect("stdout is piped"));
    let stderr = PipeCollector::start(child.stderr.take().expect("stderr is piped"));

    let status = wait_with_deadline(&mut child, timeout);
    let ((stdout, stdout_open), (stderr, stderr_open)) = (stdout.finish(), stderr.finish());
    match status {
        Some(status) => Ok(Captured {
            status,
            stdout,
            stderr,
            output_held_open: stdout_open || stderr_open,
        }),
        None => Err(RunError::TimedOut {
            command,
            after: timeout,
            stdout,
            stderr,
        }),
    }
}

/// [`try_run_captured`] for callers that can only fail the test.
pub fn run_captured(cmd: &mut Command, timeout: Duration) -> Captured {
    try_run_captured(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `cmd` as the leader of a new process group; panics with the
/// command line if it cannot be started.
pub fn spawn_in_own_group(cmd: &mut Command) -> Child {
    cmd.process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// SIGKILLs every process in the group led by `child` (see
/// [`spawn_in_own_group`]); processes that already exited are fine.
pub fn kill_process_group(child: &Child) {
    let group = i32::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
}

/// Waits for `child` to exit; on timeout kills its group, reaps it and
/// returns None.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let status = poll_until(timeout, || {
        child.try_wait().expect("waitpid on our own child")
    });
    if status.is_none() {
        kill_process_group(child);
        let _ = child.wait();
    }
    status
}

/// Reads a pipe on a thread into a shared buffer, so that output is not lost
/// even when the reader has to be abandoned.
struct PipeCollector {
    buffer: Arc<Mutex<Vec<u8>>>,
    /// Disconnects when the reader thread ends (end of file or error).
    finished: mpsc::Receiver<()>,
}

impl PipeCollector {
    fn start(mut pipe: impl Read + Send + 'static) -> PipeCollector {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (done, finished) = mpsc::channel::<()>();
        let sink = Arc::clone(&buffer);
        thread::spawn(move || {
            let _done = done;
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("pipe buffer lock")
                        .extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
        PipeCollector { buffer, finished }
    }

    /// The output, and whether the pipe was still open when we stopped waiting.
    fn finish(self) -> (String, bool) {
        let held_open = matches!(
            self.finished.recv_timeout(OUTPUT_GRACE),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let bytes = self.buffer.lock().expect("pipe buffer lock");
        (String::from_utf8_lossy(&bytes).into_owned(), held_open)
    }
}
