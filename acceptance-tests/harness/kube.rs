//! The Kubernetes API stand-in (`acceptance-tests/kube-standin/`) for the
//! longhorn tests: started in its own process group, ready once it prints
//! `STANDIN READY URL`, killed and reaped on drop (a failing test too).
//! The tests talk to it with `kubectl`, a second real client, through the
//! kubeconfig it writes.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::process::{kill_process_group, run_captured, spawn_in_own_group};
use crate::harness::tempdir::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// Pods get their grace periods, so a test's pods should trap TERM.
const STOP_PODS_TIMEOUT: Duration = Duration::from_secs(40);

/// SIGTERM to `child` alone, then waits up to `timeout` for it to exit.
fn terminate_and_wait(child: &mut Child, timeout: Duration) {
    let pid = i32::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in's virtualenv python (made by `kube-standin/setup.sh`);
/// `KUBE_STANDIN_PYTHON` names another interpreter (a developer's).
pub fn standin_python() -> PathBuf {
    if let Some(python) = env::var_os("KUBE_STANDIN_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").expect("HOME is set")).join(".cache"));
    cache.join("shardform/kube-standin-venv/bin/python")
}

/// Options of one stand-in.
#[derive(Default, Clone)]
pub struct StandinOptions {
    pub no_longhorn_crd: bool,
    pub longhorn_delay: Option<f64>,
    /// The test node agent: scheduled pods run as local processes (root only).
    pub run_pods: bool,
}

pub struct Standin {
    child: Child,
    dir: TempDir,
    pub url: String,
    runs_pods: bool,
}

impl Standin {
    pub fn start(name: &str) -> Standin {
        Standin::start_with(name, StandinOptions::default())
    }

    pub fn start_with(name: &str, options: StandinOptions) -> Standin {
        let python = standin_python();
        assert!(
            python.exists() || python.components().count() == 1,
            "the kube stand-in's virtualenv is missing ({}): run bash acceptance-tests/kube-standin/setup.sh",
            python.display()
        );
        let mut dir = TempDir::new(&env::temp_dir(), &format!("shardform-standin-{name}"))
            .expect("cannot create the stand-in's state dir");
        if crate::harness::keep_requested() {
            dir.keep();
        }
        let mut cmd = Command::new(&python);
        cmd.arg(repo_root().join("acceptance-tests/kube-standin/standin.py"))
            .arg("--state-dir")
            .arg(dir.path());
        if options.no_longhorn_crd {
            cmd.arg("--no-longhorn-crd");
        }
        if let Some(delay) = options.longhorn_delay {
            cmd.arg("--longhorn-delay").arg(delay.to_string());
        }
        if options.run_pods {
            cmd.arg("--run-pods");
        }
        let log = fs::File::create(dir.path().join("standin.log")).expect("stand-in log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = spawn_in_own_group(&mut cmd);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut standin = Standin {
            child,
            dir,
            url: String::new(),
            runs_pods: options.run_pods,
        };
        loop {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("STANDIN READY ") {
                        standin.url = url.trim().to_string();
                        break;
                    }
                }
                Err(_) => panic!(
                    "the kube stand-in did not print STANDIN READY within {READY_TIMEOUT:?}; its log:\n{}",
                    standin.log()
                ),
            }
        }
        // Keep draining stdout so the stand-in never blocks on a full pipe.
        thread::spawn(move || for _ in rx {});
        eprintln!("harness: kube stand-in {name} at {}", standin.url);
        standin
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    pub fn file(&self, name: &str) -> String {
        fs::read_to_string(self.dir().join(name))
            .unwrap_or_else(|e| panic!("stand-in file {name}: {e}"))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("standin.log")).unwrap_or_default()
    }

    /// `kubectl --kubeconfig ... --context standin-cert ARGS`; returns (success, stdout, stderr).
    pub fn kubectl_status(
        &self,
        args: &[&str],
        stdin_file: Option<&Path>,
    ) -> (bool, String, String) {
        let mut cmd = Command::new("kubectl");
        // The certificate context: a forbidden token (a 403 test) never blocks the harness.
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--context")
            .arg("standin-cert")
            .args(args);
        if let Some(file) = stdin_file {
            cmd.arg("-f").arg(file);
        }
        let out = run_captured(&mut cmd, KUBECTL_TIMEOUT);
        (out.status.success(), out.stdout, out.stderr)
    }

    /// `kubectl ARGS` that must succeed.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl_status(args, None);
        assert!(
            ok,
            "kubectl {args:?} failed:\n{stdout}\n{stderr}\n--- stand-in log tail ---\n{}",
            self.log_tail()
        );
        stdout
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The object at an API path, or None on 404.
    pub fn get(&self, path: &str) -> Option<Value> {
        let (ok, stdout, stderr) = self.kubectl_status(&["get", "--raw", path], None);
        if ok {
            return Some(
                serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("GET {path}: {e}: {stdout}")),
            );
        }
        assert!(
            stderr.contains("NotFound") || stderr.contains("not found") || stderr.contains("404"),
            "GET {path} failed: {stderr}"
        );
        None
    }

    /// Whether the pod exists with its `Ready` condition true.
    pub fn pod_ready(&self, namespace: &str, pod: &str) -> bool {
        self.get(&format!("/api/v1/namespaces/{namespace}/pods/{pod}"))
            .is_some_and(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    }

        pub fn volume(&self, name: &str) -> Option<Value> {
        self.get(&format!(
            "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/{name}"
        ))
    }

    pub fn pv(&self, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/persistentvolumes/{name}"))
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(&format!(
            "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        ))
    }

    /// POST a JSON body to a control path (`/_standin/faults`, ...).
    pub fn control(&self, path: &str, body: Value) -> String {
        let file = self.dir().join("control-body.json");
        fs::write(&file, body.to_string()).expect("write control body");
        let (ok, stdout, stderr) = self.kubectl_status(&["create", "--raw", path], Some(&file));
        assert!(ok, "POST {path} {body} failed: {stdout}{stderr}");
        stdout
    }

    /// Every request the stand-in served since the last clear.
    pub fn requests(&self) -> Vec<Value> {
        let log = self.get("/_standin/requests").expect("the request log");
        match log {
            Value::Array(items) => items,
            Value::Object(ref m) => m
                .get("requests")
                .or_else(|| m.get("items"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            other => panic!("unexpected request log: {other}"),
        }
    }

    pub fn clear_requests(&self) {
        self.kubectl(&["delete", "--raw", "/_standin/requests"]);
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        // A node agent stops its pods (processes outside its process group) and removes their
        // network namespaces on SIGTERM; a SIGKILL would leave them to the next stand-in.
        if self.runs_pods {
            terminate_and_wait(&mut self.child, STOP_PODS_TIMEOUT);
        }
        kill_process_group(&self.child);
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("harness: kube stand-in log tail:\n{}", self.log_tail());
        }
    }
}
