//! Throwaway PostgreSQL 15 instances for acceptance tests: each in its own
//! directory under the process's scratch root, on its own loopback port and
//! socket directory, copied from a template made by one `initdb`.
//!
//! Instance layout: `ROOT/pg-PID-N/{data/, sockets/, postgres.log}`.

mod citus;
mod port;
mod postmaster;
mod scratch;
mod service_user;
mod sql;
mod template;

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

pub use citus::{citus_installed, citus_library, require_citus, CitusCluster};
pub use port::free_port;
#[allow(unused_imports)] // re-exported for the tests
pub use sql::{describe_error, Rows};

use crate::harness::process::{run_captured, spawn_in_own_group};
use crate::harness::tempdir::TempDir;
use crate::harness::wait::{poll_until, wait_until};
use postmaster::{pg_ctl_stop, Shutdown};
use service_user::{hand_over, service_command};

const DATA_DIR_NAME: &str = "data";
const SOCKET_DIR_NAME: &str = "sockets";
const LOG_FILE_NAME: &str = "postgres.log";
/// Per-instance settings, included at the end of the template's
/// postgresql.conf (kept in the data dir so the instance is self-contained).
const INSTANCE_CONFIG_FILE: &str = "shardform-instance.conf";
const HOST: &str = "127.0.0.1";
const START_TIMEOUT: Duration = Duration::from_secs(120);
const CHILDREN_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LINES_ON_FAILURE: usize = 30;
/// Another process may grab our free port before the postmaster binds it.
const PORT_ATTEMPTS: usize = 5;

/// Password authentication on every TCP connection (see `require_password`).
const SCRAM_HBA: &str = "\
# shardform acceptance harness: passwords over TCP
local   all          all                  trust
host    all          all    127.0.0.1/32  scram-sha-256
local   replication  all                  trust
host    replication  all    127.0.0.1/32  scram-sha-256
";

/// How to configure a new instance.
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// Preload Citus and give it the node settings it needs. Requires Citus
    /// to be installed.
    pub citus: bool,
    /// Extra `postgresql.conf` settings, applied last (so they override the
    /// harness's). Values are quoted for you.
    pub settings: Vec<(String, String)>,
}

impl PgOptions {
    pub fn citus() -> PgOptions {
        PgOptions {
            citus: true,
            ..PgOptions::default()
        }
    }

    pub fn setting(mut self, name: &str, value: &str) -> PgOptions {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    fn server_settings(&self) -> Vec<(String, String)> {
        let mut settings = Vec::new();
        if self.citus {
            assert!(
                citus_installed(),
                "a Citus instance was requested, but Citus is not installed ({} is missing); \
                 guard the test with harness::require_citus",
                citus_library().display()
            );
            settings.extend(
                citus::CITUS_SETTINGS
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
        settings.extend(self.settings.iter().cloned());
        settings
    }
}

/// A running PostgreSQL instance, stopped (immediately) and deleted on drop,
/// also when the test panics. Superuser `postgres`, trust authentication.
pub struct PgInstance {
    dir: TempDir,
    port: u16,
    /// The postmaster, when we started it: we must reap it ourselves, since
    /// an orphan would linger as a zombie that PostgreSQL's lock-file check
    /// takes for a live server.
    postmaster: Mutex<Option<Child>>,
    /// The superuser's password once TCP connections need one.
    password: OnceLock<String>,
}

impl PgInstance {
    /// Creates and starts an instance.
    pub fn new(options: PgOptions) -> PgInstance {
        let settings = options.server_settings();
        let instance = PgInstance::unstarted();
        instance.lay_out_directories();
        instance.start_on_a_free_port(&settings)
    }

    /// A hot standby of `primary`, cloned with `pg_basebackup` and streaming
    /// from it: a real read replica. It inherits the primary's settings.
    pub fn standby_of(primary: &PgInstance) -> PgInstance {
        let instance = PgInstance::unstarted();
        hand_over(instance.dir.path());
        let mut basebackup = service_command("pg_basebackup");
        basebackup
            .args(["-h", HOST, "-U", "postgres", "--write-recovery-conf", "--checkpoint=fast"])
            .arg("-p")
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(instance.data_dir());
        let out = run_captured(&mut basebackup, START_TIMEOUT);
        assert!(out.status.success(), "pg_basebackup from port {} failed: {}", primary.port, out.stderr);
        let sockets = instance.socket_dir();
        fs::create_dir(&sockets).unwrap_or_else(|e| panic!("cannot create {}: {e}", sockets.display()));
        hand_over(&sockets);
        // The cloned instance file names the primary's port and socket: rewritten.
        let inherited = fs::read_to_string(primary.data_dir().join(INSTANCE_CONFIG_FILE)).unwrap_or_default();
        let settings: Vec<(String, String)> = inherited
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .filter(|(k, _)| *k != "port" && *k != "unix_socket_directories")
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').replace("''", "'")))
            .collect();
        instance.start_on_a_free_port(&settings)
    }

    /// A fresh instance directory; no data directory, port or process yet.
    fn unstarted() -> PgInstance {
        let dir = TempDir::new(scratch::process_root(), "pg")
            .expect("cannot create an instance directory in the scratch root");
        PgInstance { dir, port: 0, postmaster: Mutex::new(None), password: OnceLock::new() }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join(SOCKET_DIR_NAME)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(DATA_DIR_NAME)
    }

    /// The server log (all starts of this instance).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE_NAME)
    }

    /// A libpq connection string for the superuser over TCP.
    pub fn conninfo(&self) -> String {
        let mut conninfo = format!(
            "host={HOST} port={} user=postgres dbname=postgres connect_timeout=10",
            self.port
        );
        if let Some(password) = self.password.get() {
            let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
            conninfo.push_str(&format!(" password='{quoted}'"));
        }
        conninfo
    }

    /// From now on every TCP connection, replication included, must
    /// authenticate with `scram-sha-256`; the superuser's password becomes
    /// `password`, and [`PgInstance::conninfo`] carries it. Unix sockets stay
    /// trusted. Returns once a connection without the password is refused.
    pub fn require_password(&self, password: &str) {
        let literal = password.replace('\'', "''");
        self.sql(&format!(
            "SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '{literal}'"
        ));
        let without_password = self.conninfo();
        fs::write(self.data_dir().join("pg_hba.conf"), SCRAM_HBA).expect("cannot write pg_hba.conf");
        self.sql("SELECT pg_catalog.pg_reload_conf()");
        self.password.set(password.to_owned()).expect("require_password is called once");
        wait_until("the server to ask for passwords", Duration::from_secs(30), || {
            sql::simple_query_blocking(&without_password, "SELECT 1").is_err()
        });
    }

    /// Whether a postmaster runs from this data directory (whoever started it).
    pub fn is_running(&self) -> bool {
        postmaster::running_pid(&self.data_dir()).is_some()
    }

    /// Starts the instance again (after `stop` or `kill9`) on the same port.
    /// Does nothing if it is running.
    pub fn start(&self) {
        if self.is_running() {
            return;
        }
        // A postmaster that died on its own is still our unreaped child, and
        // its zombie would block the new one's lock file.
        self.reap_postmaster();
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL on port {} failed to start:\n{log}", self.port);
        }
    }

    /// `pg_ctl stop -m fast`; does nothing if the instance is not running.
    pub fn stop(&self) {
        if self.is_running() {
            pg_ctl_stop(&self.data_dir(), Shutdown::Fast).unwrap_or_else(|e| panic!("{e}"));
        }
        self.reap_postmaster();
    }

    /// Crashes the instance: SIGKILL to the postmaster, then waits until its
    /// orphaned backends noticed and exited, so that `start` can follow.
    pub fn kill9(&self) {
        let pid = postmaster::running_pid(&self.data_dir())
            .unwrap_or_else(|| panic!("kill9: PostgreSQL on port {} is not running", self.port));
        let children = postmaster::child_pids(pid);
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        self.reap_postmaster();
        wait_until(
            "the killed postmaster's processes to exit",
            CHILDREN_EXIT_TIMEOUT,
            || {
                !postmaster::process_alive(pid)
                    && children
                        .iter()
                        .all(|&child| !postmaster::process_alive(child))
            },
        );
    }

    /// A client connected as `postgres` to database `postgres`; must be
    /// called inside a tokio runtime, which drives the connection.
    pub async fn connect(&self) -> tokio_postgres::Client {
        sql::connect(&self.conninfo())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `query` (one or more statements) and returns the rows as text;
    /// panics with the server's error. Usable from sync and async tests.
    pub fn sql(&self, query: &str) -> Rows {
        self.sql_result(query)
            .unwrap_or_else(|e| panic!("SQL on port {} failed: {e}\nquery: {query}", self.port))
    }

    /// Like [`PgInstance::sql`], returning the error text instead.
    pub fn sql_result(&self, query: &str) -> Result<Rows, String> {
        sql::simple_query_blocking(&self.conninfo(), query)
    }

    fn lay_out_directories(&self) {
        hand_over(self.dir.path());
        template::copy_template_to(&self.data_dir());
        let sockets = self.socket_dir();
        fs::create_dir(&sockets)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", sockets.display()));
        hand_over(&sockets);
    }

    fn start_on_a_free_port(mut self, settings: &[(String, String)]) -> PgInstance {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            self.write_instance_config(settings);
            match self.try_start() {
                Ok(()) => return self,
                Err(log) if attempt < PORT_ATTEMPTS && is_port_conflict(&log) => continue,
                Err(log) => panic!("PostgreSQL on port {} failed to start:\n{log}", self.port),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn write_instance_config(&self, settings: &[(String, String)]) {
        let identity = [
            ("port".to_owned(), self.port.to_string()),
            (
                "unix_socket_directories".to_owned(),
                self.socket_dir().display().to_string(),
            ),
        ];
        let lines: String = identity
            .iter()
            .chain(settings)
            .map(|(name, value)| format!("{name} = {}\n", quote_setting(value)))
            .collect();
        let file = self.data_dir().join(INSTANCE_CONFIG_FILE);
        fs::write(
            &file,
            format!("# written by the shardform acceptance harness\n{lines}"),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        hand_over(&file);
    }

    /// Starts the postmaster as our child and waits until it accepts
    /// connections. On failure returns what it logged during this attempt.
    fn try_start(&self) -> Result<(), String> {
        let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let child = self.spawn_postmaster();
        let pid = child.id();
        *self.postmaster.lock().expect("postmaster lock") = Some(child);

        let data_dir = self.data_dir();
        let outcome = poll_until(START_TIMEOUT, || {
            if postmaster::accepts_connections(&data_dir, pid) {
                return Some(Ok(()));
            }
            self.exit_status().map(Err)
        });
        let failure = match outcome {
            Some(Ok(())) => return Ok(()),
            Some(Err(status)) => format!("the postmaster exited ({status})"),
            None => {
                self.kill_postmaster();
                format!("the postmaster was not ready after {START_TIMEOUT:?} and was killed")
            }
        };
        Err(format!(
            "{failure}; its log:\n{}",
            self.log_since(log_start)
        ))
    }

    fn spawn_postmaster(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let log_for_stderr = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        let mut postgres = service_command("postgres");
        postgres
            .arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        spawn_in_own_group(&mut postgres)
    }

    /// The exit status of our postmaster child, once it has exited.
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut postmaster = self.postmaster.lock().expect("postmaster lock");
        let status = postmaster.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            *postmaster = None;
        }
        status
    }

    /// Waits for our postmaster child, if any, after it was told to exit.
    fn reap_postmaster(&self) {
        if let Some(mut child) = self.postmaster.lock().expect("postmaster lock").take() {
            let _ = child.wait();
        }
    }

    fn kill_postmaster(&self) {
        if let Some(child) = self.postmaster.lock().expect("postmaster lock").as_mut() {
            let _ = child.kill();
        }
        self.reap_postmaster();
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log_since(0);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_since(&self, offset: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        if thread::panicking() {
            // The log is deleted with the instance; show its end with the failure.
            eprintln!(
                "harness: end of the PostgreSQL log (port {}):\n{}",
                self.port,
                self.log_tail(LOG_LINES_ON_FAILURE)
            );
        }
        if self.is_running() {
            if let Err(e) = pg_ctl_stop(&self.data_dir(), Shutdown::Immediate) {
                // Never panic here: drop may run while a failed test unwinds.
                eprintln!("harness: {e}; killing the postmaster");
                self.kill_postmaster();
            }
        }
        self.reap_postmaster();
        // `self.dir` removes the files when it is dropped next.
    }
}

/// Starts `count` instances concurrently. If any fails, the others are
/// stopped before the failure is re-raised.
pub fn start_instances(count: usize, options: &PgOptions) -> Vec<PgInstance> {
    let outcomes: Vec<thread::Result<PgInstance>> = thread::scope(|scope| {
        let starting: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| PgInstance::new(options.clone())))
            .collect();
        starting.into_iter().map(|handle| handle.join()).collect()
    });
    let mut instances = Vec::with_capacity(count);
    let mut first_failure = None;
    for outcome in outcomes {
        match outcome {
            Ok(instance) => instances.push(instance),
            Err(panic) => {
                first_failure.get_or_insert(panic);
            }
        }
    }
    if let Some(panic) = first_failure {
        drop(instances);
        std::panic::resume_unwind(panic);
    }
    instances
}

/// A postgresql.conf value: always single-quoted, which PostgreSQL accepts
/// for every type.
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn is_port_conflict(log: &str) -> bool {
    log.contains("Address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_values_are_quoted() {
        assert_eq!(quote_setting("citus"), "'citus'");
        assert_eq!(quote_setting("it's"), "'it''s'");
    }
}
