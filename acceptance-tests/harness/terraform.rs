//! Driving the real Terraform CLI against the providers under test, with the
//! checks terraform-plugin-testing runs for every step: apply, then empty
//! plans with and without refresh, import verification, destroy.

mod binary;
mod environment;
mod mirror;
mod state;

use std::env;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use binary::{terraform_binary, terraform_version, terraform_version_label};
#[allow(unused_imports)] // re-exported for the tests
pub use mirror::{
    provider_binaries, required_providers_hcl, ProviderBinary, PROVIDER_NAMESPACE, PROVIDER_VERSION,
};

use crate::harness::process::{run_captured, spawn_in_own_group};
use crate::harness::tempdir::TempDir;
use environment::terraform_command;

/// Generous, but a hung provider must still fail the test rather than CI.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Set (to anything but "0") to keep working directories for inspection.
const KEEP_VAR: &str = "SHARDFORM_KEEP_WORKDIR";
/// Subcommands that accept `-input=false`.
const TAKES_INPUT_FLAG: &[&str] = &["init", "plan", "apply", "destroy", "import", "refresh"];
/// Subcommands whose flags follow a second word (`state list -no-color`).
const TWO_WORD_COMMANDS: &[&str] = &["state", "workspace", "providers"];
const CONFIG_FILE: &str = "main.tf";
/// Harness files inside a workdir; Terraform only reads `*.tf` at the top.
const HARNESS_DIR: &str = ".harness";

/// What one Terraform command did.
#[derive(Debug)]
pub struct TfOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl TfOutput {
    /// The exit code, or -1 when Terraform died from a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for TfOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "terraform {} (exit {})",
            self.args.join(" "),
            self.code()
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// A Terraform working directory for one test, with the providers installed
/// in a private mirror. Removed on drop unless `SHARDFORM_KEEP_WORKDIR` is set.
pub struct Workdir {
    name: String,
    dir: TempDir,
    providers: Vec<ProviderBinary>,
    spawned: AtomicUsize,
    /// Variables every Terraform command here gets besides the harness's own.
    extra_env: std::sync::Mutex<Vec<(String, String)>>,
}

impl Workdir {
    /// A workdir offering this crate's three providers.
    pub fn new(test_name: &str) -> Workdir {
        Workdir::with_providers(test_name, provider_binaries())
    }

    /// A workdir offering exactly `providers` (none for provider-less
    /// configurations, as in the harness self-tests).
    pub fn with_providers(test_name: &str, providers: Vec<ProviderBinary>) -> Workdir {
        let name = sanitize(test_name);
        let mut dir = TempDir::new(&env::temp_dir(), &format!("shardform-tf-{name}"))
            .expect("cannot create a Terraform workdir in the temp dir");
        if keep_requested() {
            dir.keep();
            eprintln!("harness: keeping workdir {}", dir.path().display());
        }
        let workdir = Workdir {
            name,
            dir,
            providers,
            spawned: AtomicUsize::new(0),
            extra_env: std::sync::Mutex::new(Vec::new()),
        };
        workdir.install_providers();
        workdir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets `key=value` for every later Terraform command in this workdir
    /// (say, `SSL_CERT_FILE` for a registry with a test CA).
    pub fn set_env(&self, key: &str, value: &str) {
        self.extra_env.lock().unwrap().push((key.to_string(), value.to_string()));
    }

    /// Replaces the configuration (`main.tf`).
    pub fn write_config(&self, hcl: &str) {
        let file = self.path().join(CONFIG_FILE);
        fs::write(&file, hcl).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    }

    /// Runs `terraform ARGS` here with `-no-color` (and `-input=false` where
    /// accepted) and returns whatever happened; never panics on failure.
    pub fn run(&self, args: &[&str]) -> TfOutput {
        let args = with_automation_flags(args);
        let started = Instant::now();
        let captured = run_captured(&mut self.command(&args), COMMAND_TIMEOUT);
        // Users pipe Terraform's output (`terraform apply | tee log`): a
        // process the providers leave behind must not hold it open.
        assert!(
            !captured.output_held_open,
            "[{}] terraform {} exited, but its output pipes stayed open: a process it started (through a provider) inherited them",
            self.name,
            args.join(" ")
        );
        let output = TfOutput {
            args,
            status: captured.status,
            stdout: captured.stdout,
            stderr: captured.stderr,
        };
        eprintln!(
            "harness[{}]: terraform {} -> exit {} in {:.1?}",
            self.name,
            output.args.join(" "),
            output.code(),
            started.elapsed()
        );
        output
    }

    pub fn init(&self) -> TfOutput {
        self.expect_success(self.run(&["init"]))
    }

    /// `apply -auto-approve`; panics with Terraform's output on failure.
    pub fn apply(&self) -> TfOutput {
        self.expect_success(self.run(&["apply", "-auto-approve"]))
    }

    /// `apply -auto-approve` that must fail; returns the failure to inspect.
    pub fn apply_expect_error(&self) -> TfOutput {
        let output = self.run(&["apply", "-auto-approve"]);
        assert!(
            !output.success(),
            "expected apply to fail, but it succeeded:\n{output}"
        );
        output
    }

    /// `plan -detailed-exitcode`: 0 means no changes, 2 changes, 1 an error.
    pub fn plan_exit_code(&self, refresh: bool) -> (i32, TfOutput) {
        let mut args = vec!["plan", "-detailed-exitcode"];
        if !refresh {
            args.push("-refresh=false");
        }
        let output = self.run(&args);
        (output.code(), output)
    }

    /// The perpetual-diff guard: a plan from the stored state alone and a
    /// plan after refreshing from the real world must both be empty.
    pub fn assert_plan_empty(&self) {
        for refresh in [false, true] {
            match self.plan_exit_code(refresh) {
                (0, _) => {}
                (2, plan) => panic!(
                    "[{}] plan (refresh={refresh}) is not empty, a perpetual diff:\n{plan}",
                    self.name
                ),
                (_, plan) => panic!("[{}] plan (refresh={refresh}) failed:\n{plan}", self.name),
            }
        }
    }

    /// Applies, then checks that nothing is left to change.
    pub fn apply_and_assert_idempotent(&self) -> TfOutput {
        let output = self.apply();
        self.assert_plan_empty();
        output
    }

    pub fn destroy(&self) -> TfOutput {
        self.expect_success(self.run(&["destroy", "-auto-approve"]))
    }

    /// The state as `terraform show -json` prints it.
    pub fn state_json(&self) -> Value {
        let output = self.expect_success(self.run(&["show", "-json"]));
        serde_json::from_str(&output.stdout).unwrap_or_else(|e| {
            panic!("`terraform show -json` printed invalid JSON ({e}):\n{output}")
        })
    }

    /// The addresses of every resource in the state (empty when there is none).
    pub fn resource_addresses(&self) -> Vec<String> {
        state::resource_addresses(&self.state_json())
    }

    /// The `values` object of the resource at `address` (root or child module).
    pub fn resource_values(&self, address: &str) -> Value {
        let state = self.state_json();
        match state::find_resource_values(&state, address) {
            Some(values) => values.clone(),
            None => panic!(
                "[{}] no resource {address} in state; present: {:?}",
                self.name,
                state::resource_addresses(&state)
            ),
        }
    }

    /// Import verification: imports `id` as `address` into a fresh workdir
    /// with the same configuration, then requires every attribute to equal
    /// this workdir's, except those under the `ignore` paths.
    pub fn import_and_compare(&self, address: &str, id: &str, ignore: &[&str]) {
        let fresh =
            Workdir::with_providers(&format!("{}-import", self.name), self.providers.clone());
        fresh.write_config(&self.config());
        fresh.init();
        fresh.expect_success(fresh.run(&["import", address, id]));

        let applied = self.resource_values(address);
        let imported = fresh.resource_values(address);
        let differences = state::attribute_differences(&applied, &imported, ignore);
        assert!(
            differences.is_empty(),
            "[{}] importing {address} from id {id:?} gave different attributes \
             (expected = applied, got = imported):\n{}",
            self.name,
            differences.join("\n")
        );
    }

    /// Starts `terraform ARGS` in the background for fault tests (say,
    /// SIGKILL in the middle of an apply). Output goes to a log file in the
    /// workdir, so a full pipe can never stall it. Terraform leads its own
    /// process group: `child.kill()` kills Terraform alone,
    /// [`crate::harness::process::kill_process_group`] its providers too.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let args = with_automation_flags(args);
        let log_path = self.harness_path(&format!(
            "spawn-{}.log",
            self.spawned.fetch_add(1, Ordering::Relaxed)
        ));
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_for_stderr = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        eprintln!(
            "harness[{}]: spawned terraform {}, output in {}",
            self.name,
            args.join(" "),
            log_path.display()
        );
        let mut cmd = self.command(&args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_for_stderr);
        spawn_in_own_group(&mut cmd)
    }

    pub fn expect_success(&self, output: TfOutput) -> TfOutput {
        assert!(
            output.success(),
            "[{}] Terraform failed:\n{output}",
            self.name
        );
        output
    }

    fn config(&self) -> String {
        let file = self.path().join(CONFIG_FILE);
        fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
    }

    fn harness_path(&self, name: &str) -> PathBuf {
        self.path().join(HARNESS_DIR).join(name)
    }

    fn install_providers(&self) {
        let mirror = self.harness_path("mirror");
        mirror::install_mirror(&mirror, &self.providers)
            .unwrap_or_else(|e| panic!("cannot install providers into {}: {e}", mirror.display()));
        let cli_config = self.harness_path("cli.tfrc");
        fs::write(&cli_config, mirror::cli_config(&mirror))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", cli_config.display()));
    }

    /// A Terraform command with a controlled environment.
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = terraform_command(&terraform_binary());
        cmd.args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", self.harness_path("cli.tfrc"));
        for (key, value) in self.extra_env.lock().unwrap().iter() {
            cmd.env(key, value);
        }
        cmd
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if thread::panicking() && !keep_requested() {
            eprintln!(
                "harness[{}]: removing the workdir; set {KEEP_VAR}=1 to keep it",
                self.name
            );
        }
    }
}

/// Whether `SHARDFORM_KEEP_WORKDIR` asks to keep test files for inspection.
pub fn keep_requested() -> bool {
    env::var_os(KEEP_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

/// Inserts `-no-color` (and `-input=false` where accepted) right after the
/// subcommand, before positional arguments such as import's ADDR and ID,
/// unless the caller passed them already.
fn with_automation_flags(args: &[&str]) -> Vec<String> {
    let command_words = match args {
        [first, second, ..] if TWO_WORD_COMMANDS.contains(first) && !second.starts_with('-') => 2,
        [] => 0,
        _ => 1,
    };
    let (command, rest) = args.split_at(command_words);
    let mut flags = vec!["-no-color"];
    if command
        .first()
        .is_some_and(|name| TAKES_INPUT_FLAG.contains(name))
    {
        flags.push("-input=false");
    }
    flags.retain(|flag| !rest.contains(flag));
    command
        .iter()
        .chain(&flags)
        .chain(rest)
        .map(|arg| arg.to_string())
        .collect()
}

/// Keeps test names usable in paths.
fn sanitize(test_name: &str) -> String {
    test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_subcommand() {
        assert_eq!(
            with_automation_flags(&["import", "citus_cluster.main", "id"]),
            [
                "import",
                "-no-color",
                "-input=false",
                "citus_cluster.main",
                "id"
            ]
        );
        assert_eq!(
            with_automation_flags(&["show", "-json"]),
            ["show", "-no-color", "-json"]
        );
        assert_eq!(
            with_automation_flags(&["state", "list"]),
            ["state", "list", "-no-color"]
        );
        assert_eq!(
            with_automation_flags(&["version"]),
            ["version", "-no-color"]
        );
        assert_eq!(
            with_automation_flags(&["plan", "-input=false", "-no-color"]),
            ["plan", "-input=false", "-no-color"]
        );
    }

    #[test]
    fn sanitized_names_are_path_safe() {
        assert_eq!(
            sanitize("citus::cluster scale-in"),
            "citus__cluster_scale-in"
        );
    }
}
