//! `pgpool_ha` (local target) through the real Terraform CLI, with real
//! PostgreSQL 15, repmgr 5.3 and pgpool 4.3 processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{required_providers_hcl, wait_until, Workdir};

const PG_CTL: &str = "/usr/lib/postgresql/15/bin/pg_ctl";

/// Stops every process of the group when the test ends, pass or fail, so
/// a failed test never leaves PostgreSQL or pgpool running.
pub(crate) struct GroupGuard {
    pub(crate) base: PathBuf,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        for pid in group_pids(&self.base) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Backends die with their postmaster; give them a moment.
        thread::sleep(Duration::from_millis(300));
        // Kept with the workdir (it lies inside it) for a look at its logs.
        if !crate::harness::keep_requested() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// Processes whose command line names the base directory (postmasters,
/// repmgrd, pgpool), plus the children of those postmasters and pgpools.
pub(crate) fn group_pids(base: &Path) -> Vec<i32> {
    let needle = format!("{}/", base.display());
    let mut roots = Vec::new();
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            roots.push(pid);
        }
        all.push(pid);
    }
    let mut found = roots.clone();
    for pid in all {
        if ppid(pid).is_some_and(|p| roots.contains(&p)) && !found.contains(&pid) {
            found.push(pid);
        }
    }
    found
}

fn stat_fields(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let ppid = stat[close + 2..].split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid).map(|(_, p)| p)
}

/// The command names of every ancestor of `pid`.
fn ancestors(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = pid;
    while let Some((_, parent)) = stat_fields(current) {
        if parent <= 1 {
            break;
        }
        if let Some((comm, _)) = stat_fields(parent) {
            out.push(comm);
        }
        current = parent;
    }
    out
}

fn pid_from(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok()
}

/// Result rows as text; one connection per call (as pgpool sees a new client).
pub(crate) fn sql(port: u16, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    sql_in(port, "postgres", query)
}

pub(crate) fn sql_in(port: u16, dbname: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    sql_within(port, dbname, query, Duration::from_secs(120))
}

/// One session, one query, given up after `within` (a statement that waits,
/// say for a synchronous standby during a failover, counts as failed).
pub(crate) fn sql_within(port: u16, dbname: &str, query: &str, within: Duration) -> Result<Vec<Vec<Option<String>>>, String> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=3");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { tokio::time::timeout(within, run_query(&conninfo, query)).await.unwrap_or_else(|_| Err(format!("no answer within {within:?}"))) })
}

async fn run_query(conninfo: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let messages = client.simple_query(query).await.map_err(|e| match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    })?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

pub(crate) fn sql_ok(port: u16, query: &str) -> Vec<Vec<Option<String>>> {
    sql(port, query).unwrap_or_else(|e| panic!("{query} on port {port}: {e}"))
}

pub(crate) fn scalar(port: u16, query: &str) -> String {
    sql_ok(port, query)[0][0].clone().unwrap_or_default()
}

pub(crate) struct Group {
    // First, so it drops first: processes stop before the workdir goes.
    _guard: GroupGuard,
    pub(crate) tf: Workdir,
    pub(crate) base: PathBuf,
}

impl Group {
    pub(crate) fn new(test: &str) -> Group {
        let tf = Workdir::new(test);
        let base = tf.path().join("group");
        let _guard = GroupGuard { base: base.clone() };
        Group { tf, base, _guard }
    }

    pub(crate) fn write(&self, standbys: u32, extra: &str) {
        self.write_with_rejoin(standbys, extra, true)
    }

    fn write_with_rejoin(&self, standbys: u32, extra: &str, rejoin: bool) {
        let mut hcl = required_providers_hcl(&["pgpool"]);
        hcl.push_str(&format!(
            r#"
resource "pgpool_ha" "g" {{
  name      = "test"
  base_dir  = "{base}"
  standbys  = {standbys}
  postgresql_settings = {{
    fsync              = "off"
    synchronous_commit = "on"
  }}
  pgpool_settings {{
    health_check_period = 1
    health_check_timeout = 2
    health_check_max_retries = 0
    sr_check_period = 1
    num_init_children = 8
  }}
  failover_settings {{
    monitor_interval_secs = 1
    reconnect_attempts    = 2
    reconnect_interval    = 1
    rejoin_failed_primary = {rejoin}
  }}
{extra}
}}
"#,
            base = self.base.display()
        ));
        self.tf.write_config(&hcl);
    }

    pub(crate) fn state(&self) -> Value {
        self.tf.resource_values("pgpool_ha.g")
    }

    pub(crate) fn endpoint(&self) -> u16 {
        self.state()["endpoint_port"].as_u64().unwrap() as u16
    }

    pub(crate) fn node_port(&self, name: &str) -> u16 {
        let state = self.state();
        let node = state["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}"));
        node["port"].as_u64().unwrap() as u16
    }

    /// Names and statuses, e.g. `node0:primary:up`.
    pub(crate) fn summary(&self) -> Vec<String> {
        self.state()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| format!("{}:{}:{}", n["name"].as_str().unwrap(), n["role"].as_str().unwrap(), n["status"].as_str().unwrap()))
            .collect()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        group_pids(&self.base)
    }
}

/// SHOW POOL_NODES as (node_id, status, role, select_cnt).
pub(crate) fn pool_nodes(endpoint: u16) -> Vec<(String, String, String, i64)> {
    try_pool_nodes(endpoint).unwrap_or_else(|e| panic!("SHOW POOL_NODES on port {endpoint}: {e}"))
}

/// A query through pgpool, asked again for up to 15 s while pgpool ends the
/// session instead of answering: it does so for sessions that meet its
/// handling of a failover or a failback (an attach, such as the event
/// hook's after a rejoin), which may still be under way when a wait has just
/// seen its outcome. Each dropped session is printed.
fn sql_once_answering(endpoint: u16, query: &str) -> Vec<Vec<Option<String>>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match sql_within(endpoint, "postgres", query, Duration::from_secs(5)) {
            Ok(rows) => return rows,
            Err(e) if e.contains("connection closed") && Instant::now() < deadline => {
                eprintln!("pgpool_ha: {query} on port {endpoint}: {e}; asking again");
                thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("{query} on port {endpoint}: {e}"),
        }
    }
}

fn pool_nodes_once_answering(endpoint: u16) -> Vec<(String, String, String, i64)> {
    pool_node_rows(sql_once_answering(endpoint, "SHOW POOL_NODES"))
}

/// For waits: pgpool drops sessions while it handles a failover.
pub(crate) fn try_pool_nodes(endpoint: u16) -> Result<Vec<(String, String, String, i64)>, String> {
    sql(endpoint, "SHOW POOL_NODES").map(pool_node_rows)
}

fn pool_node_rows(rows: Vec<Vec<Option<String>>>) -> Vec<(String, String, String, i64)> {
    rows.into_iter()
        .map(|r| (r[0].clone().unwrap(), r[3].clone().unwrap(), r[6].clone().unwrap(), r[8].clone().unwrap().parse().unwrap()))
        .collect()
}

/// Every pgpool backend attached (up or waiting), once pgpool answers.
fn all_attached(endpoint: u16) -> bool {
    try_pool_nodes(endpoint).is_ok_and(|nodes| nodes.iter().all(|p| p.1 == "up" || p.1 == "waiting"))
}

fn assert_detached_from_terraform(group: &Group) {
    let pids = group.pids();
    assert!(!pids.is_empty(), "no process of the group is running");
    for pid in pids {
        let chain = ancestors(pid);
        assert!(
            !chain.iter().any(|c| c.starts_with("terraform")),
            "process {pid} has terraform or the provider among its ancestors: {chain:?}"
        );
    }
}

#[test]
fn pgpool_ha_lifecycle_balancing_scaling_and_destroy() {
    let group = Group::new("pgpool_ha_lifecycle");
    let tf = &group.tf;
    group.write(2, "");
    tf.init();
    let started = Instant::now();
    tf.apply_and_assert_idempotent();
    eprintln!("pgpool_ha: group of 3 up in {:.1?} (apply and two empty plans)", started.elapsed());
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up", "node2:standby:up"]);
    assert_detached_from_terraform(&group);

    // Writes through the endpoint reach the primary; reads are balanced.
    let endpoint = group.endpoint();
    sql_ok(endpoint, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)");
    assert_eq!(scalar(group.node_port("node0"), "SELECT count(*) FROM t"), "100");
    wait_until("the insert to reach the standbys", Duration::from_secs(10), || {
        sql(group.node_port("node2"), "SELECT count(*) FROM t").is_ok_and(|r| r[0][0].as_deref() == Some("100"))
    });
    for _ in 0..40 {
        sql_ok(endpoint, "SELECT count(*) FROM t");
    }
    let pool = pool_nodes(endpoint);
    eprintln!("pgpool_ha: SHOW POOL_NODES after 40 reads: {pool:?}");
    let standby_selects: i64 = pool.iter().filter(|p| p.2 == "standby").map(|p| p.3).sum();
    assert!(standby_selects > 0, "no read went to a standby: {pool:?}");
    assert!(pool.iter().all(|p| p.1 == "up" || p.1 == "waiting"), "{pool:?}");

    // Destroy is refused while protection is on; nothing stops.
    let refused = tf.run(&["destroy", "-auto-approve"]);
    assert!(!refused.success() && refused.stderr.contains("Deletion protection is on"), "{refused}");
    assert!(!group.pids().is_empty());

    // Standbys 2 -> 1 -> 2.
    group.write(1, "");
    tf.apply_and_assert_idempotent();
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);
    assert!(!group.base.join("node2").exists(), "node2's directory is still there");
    assert_eq!(pool_nodes(endpoint).len(), 2);
    group.write(2, "");
    tf.apply_and_assert_idempotent();
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up", "node2:standby:up"]);
    assert_eq!(scalar(group.node_port("node2"), "SELECT count(*) FROM t"), "100");

    // Protection off: destroy leaves no process and no directory.
    group.write(2, "  deletion_protection = false\n");
    tf.apply_and_assert_idempotent();
    tf.destroy();
    let left = group.pids();
    assert!(left.is_empty(), "processes left after destroy: {left:?}");
    assert!(!group.base.exists(), "the base directory is still there");
}

/// Writes ids through the endpoint, one connection per write, recording
/// every acknowledged id and the longest stretch without a successful write.
pub(crate) struct WriteLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    last_error: Arc<Mutex<String>>,
    handle: Option<thread::JoinHandle<Duration>>,
}

impl WriteLoad {
    pub(crate) fn start(endpoint: u16) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(String::new()));
        let (s, a, e) = (stop.clone(), acked.clone(), last_error.clone());
        let handle = thread::spawn(move || {
            let mut id = 0i64;
            let mut last_ok = Instant::now();
            let mut worst = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                id += 1;
                match sql_within(endpoint, "postgres", &format!("INSERT INTO w VALUES ({id})"), Duration::from_secs(5)) {
                    Ok(_) => {
                        worst = worst.max(last_ok.elapsed());
                        last_ok = Instant::now();
                        a.lock().unwrap().push(id);
                    }
                    Err(error) => {
                        *e.lock().unwrap() = error;
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            worst
        });
        WriteLoad { stop, acked, last_error, handle: Some(handle) }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops writing; returns the longest gap between acknowledged writes.
    pub(crate) fn finish(mut self) -> (Vec<i64>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let worst = self.handle.take().unwrap().join().unwrap();
        (self.acked.lock().unwrap().clone(), worst)
    }
}

/// kill -9 of the primary's postmaster under a steady write load through the
/// endpoint: returns the promoted node's port once writes succeed again, after
/// checking that every acknowledged write survived (synchronous replication).
fn kill_primary_under_load(group: &Group, killed: &str, candidates: &[u16]) -> u16 {
    let endpoint = group.endpoint();
    sql_ok(endpoint, "TRUNCATE w");
    let load = WriteLoad::start(endpoint);
    wait_until("some writes", Duration::from_secs(10), || load.acked() >= 50);
    let postmaster = pid_from(&group.base.join(killed).join("data/postmaster.pid")).expect("the primary's postmaster pid");
    let killed_at = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(postmaster, libc::SIGKILL) };
    let before = load.acked();
    let recovered = eventually(Duration::from_secs(90), || load.acked() >= before + 50);
    assert!(
        recovered,
        "no writes through the endpoint 90 s after kill -9 of {killed}; last error: {}; SHOW POOL_NODES: {:?}",
        load.last_error.lock().unwrap(),
        try_pool_nodes(endpoint)
    );
    let recovered_in = killed_at.elapsed();
    let (acked, worst_gap) = load.finish();
    eprintln!(
        "pgpool_ha: failover of {killed}: writes succeed again {:.1?} after kill -9 (longest gap without a write {worst_gap:.1?}); {} writes acknowledged",
        recovered_in,
        acked.len()
    );
    let new_primary = candidates
        .iter()
        .copied()
        .find(|p| sql(*p, "SELECT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("f")))
        .expect("a standby was promoted");
    // Synchronous replication: every acknowledged write survived.
    let present: i64 = scalar(new_primary, &format!("SELECT count(*) FROM w WHERE id = ANY('{{{}}}'::bigint[])", acked.iter().map(i64::to_string).collect::<Vec<_>>().join(","))).parse().unwrap();
    assert_eq!(present, acked.len() as i64, "acknowledged writes were lost in the failover");
    eprintln!("pgpool_ha: {present} of {} acknowledged writes present on the new primary", acked.len());
    let routed = sql_once_answering(endpoint, "SELECT inet_server_port() FROM (SELECT 1) s FOR UPDATE");
    assert_eq!(routed[0][0].as_deref(), Some(new_primary.to_string().as_str()), "pgpool sends writes elsewhere");
    new_primary
}

/// pgpool and repmgr name the same primary, and every pgpool backend is attached.
fn assert_one_primary_everywhere(endpoint: u16, primary_port: u16) {
    let pool = pool_nodes_once_answering(endpoint);
    let pool_primary: Vec<_> = pool.iter().filter(|p| p.2 == "primary").map(|p| p.0.clone()).collect();
    let repmgr_primary = sql_in(primary_port, "repmgr", "SELECT (node_id - 1)::text FROM repmgr.nodes WHERE type = 'primary' AND active")
        .unwrap()[0][0]
        .clone()
        .unwrap();
    assert_eq!(pool_primary, [repmgr_primary], "pgpool and repmgr disagree on the primary: {pool:?}");
    assert!(pool.iter().all(|p| p.1 == "up" || p.1 == "waiting"), "{pool:?}");
}

#[test]
fn pgpool_ha_failover_fencing_and_rejoin() {
    let group = Group::new("pgpool_ha_failover");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    // First failover: the failed primary stays fenced and down for inspection.
    let settings = "  synchronous_replication = true\n  deletion_protection = false\n";
    group.write_with_rejoin(2, settings, false);
    tf.init();
    tf.apply_and_assert_idempotent();
    let endpoint = group.endpoint();
    let (port0, port1, port2) = (group.node_port("node0"), group.node_port("node1"), group.node_port("node2"));
    sql_ok(endpoint, "CREATE TABLE w (id bigint PRIMARY KEY)");
    let new_primary = kill_primary_under_load(&group, "node0", &[port1, port2]);
    // pgpool may find the new primary before repmgr's event hook has run.
    wait_until("the event hook to fence node0", Duration::from_secs(30), || group.base.join("node0/data/standby.signal").exists());

    // The old primary restarted by hand comes up read-only: never a second primary.
    let node0 = group.base.join("node0");
    let started = Command::new("runuser")
        .args(["-u", "postgres", "--", PG_CTL, "-D"])
        .arg(node0.join("data"))
        .arg("-l")
        .arg(node0.join("postgres.log"))
        .args(["-w", "start"])
        .status()
        .unwrap();
    assert!(started.success(), "could not restart node0 by hand");
    assert_eq!(scalar(port0, "SELECT pg_is_in_recovery()"), "t", "node0 came back as a primary");
    let refused = sql(port0, "INSERT INTO w VALUES (-1)").expect_err("node0 accepted a write on its own port");
    assert!(refused.contains("read-only"), "{refused}");
    eprintln!("pgpool_ha: write to the old primary's own port refused: {}", refused.lines().next().unwrap_or(""));
    for _ in 0..10 {
        sql_ok(endpoint, "INSERT INTO w SELECT max(id) + 1 FROM w");
        assert_eq!(scalar(endpoint, "SELECT inet_server_port() FROM (SELECT 1) s FOR UPDATE"), new_primary.to_string());
    }
    let pool = pool_nodes(endpoint);
    assert!(pool.iter().any(|p| p.0 == "0" && p.1 == "down"), "pgpool attached the old primary: {pool:?}");
    assert_eq!(pool.iter().filter(|p| p.2 == "primary").count(), 1, "{pool:?}");

    // The plan shows the repair; apply rejoins node0 as a standby.
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "the fenced node must show in the plan:\n{plan}");
    let said: Vec<&str> = plan.stdout.lines().chain(plan.stderr.lines()).filter(|l| l.contains("node0 is")).collect();
    assert!(!said.is_empty(), "{plan}");
    eprintln!("pgpool_ha: plan after the old primary came back: {said:?}");
    tf.apply_and_assert_idempotent();
    let events = sql_in(new_primary, "repmgr", "SELECT event || ':' || successful::text FROM repmgr.events WHERE node_id = 1 ORDER BY event_timestamp").unwrap();
    eprintln!("pgpool_ha: node0's repair events in repmgr: {events:?}");
    // Rewound in place (`node rejoin --force-rewind`), not cloned again.
    let has = |event: &str| events.iter().any(|e| e[0].as_deref() == Some(event));
    assert!(!has("standby_clone:true") && has("standby_register:true"), "node0 was not rejoined in place: {events:?}");
    let summary = group.summary();
    eprintln!("pgpool_ha: after repair: {summary:?}");
    assert!(summary.contains(&"node0:standby:up".to_string()), "{summary:?}");
    assert_eq!(scalar(port0, "SELECT pg_is_in_recovery()"), "t");
    assert_one_primary_everywhere(endpoint, new_primary);

    // Second failover, with the default rejoin: the event hook fences the
    // failed primary, rewinds it and rejoins it without Terraform, so the
    // next plan is empty without an apply.
    group.write_with_rejoin(2, settings, true);
    tf.apply_and_assert_idempotent();
    let killed = group.summary().iter().find(|n| n.contains(":primary:")).unwrap().split(':').next().unwrap().to_string();
    let killed_port = group.node_port(&killed);
    let others: Vec<u16> = [port0, port1, port2].into_iter().filter(|p| *p != killed_port).collect();
    let killed_at = Instant::now();
    let newer_primary = kill_primary_under_load(&group, &killed, &others);
    wait_until("the failed primary rejoined and attached by the event hook", Duration::from_secs(120), || {
        sql(killed_port, "SELECT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("t"))
            && all_attached(endpoint)
    });
    eprintln!(
        "pgpool_ha: {killed} rejoined as a standby and attached {:.1?} after kill -9; event log:\n{}",
        killed_at.elapsed(),
        read_log(&group.base.join("pgpool/repmgr-event.log"))
    );
    assert_one_primary_everywhere(endpoint, newer_primary);
    tf.assert_plan_empty();
    let refreshed = tf.run(&["apply", "-refresh-only", "-auto-approve"]);
    assert!(refreshed.success(), "{refreshed}");
    let summary = group.summary();
    assert!(summary.contains(&format!("{killed}:standby:up")), "{summary:?}");

    // Third failover, rejoin off again, and nobody restarts the old primary:
    // it stays fenced and down, the plan shows it, and apply recovers it
    // (single-user crash recovery, then a rewind), not a fresh clone.
    group.write_with_rejoin(2, settings, false);
    tf.apply_and_assert_idempotent();
    let killed = group.summary().iter().find(|n| n.contains(":primary:")).unwrap().split(':').next().unwrap().to_string();
    let killed_port = group.node_port(&killed);
    let others: Vec<u16> = [port0, port1, port2].into_iter().filter(|p| *p != killed_port).collect();
    let newest_primary = kill_primary_under_load(&group, &killed, &others);
    let fenced = group.base.join(&killed).join("fenced");
    wait_until("the event hook to fence the old primary", Duration::from_secs(30), || fenced.exists());
    assert!(sql(killed_port, "SELECT 1").is_err(), "{killed} runs again");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "the fenced, stopped node must show in the plan:\n{plan}");
    let repair = Instant::now();
    tf.apply_and_assert_idempotent();
    eprintln!("pgpool_ha: apply recovered the fenced {killed} in {:.1?}", repair.elapsed());
    let events = sql_in(newest_primary, "repmgr", &format!(
        "SELECT event FROM repmgr.events WHERE node_id = {} AND event_timestamp > now() - interval '2 minutes' ORDER BY event_timestamp",
        killed.trim_start_matches("node").parse::<u32>().unwrap() + 1
    ))
    .unwrap();
    eprintln!("pgpool_ha: {killed}'s events since: {events:?}");
    assert!(!events.iter().any(|e| e[0].as_deref() == Some("standby_clone")), "{killed} was cloned again, not rewound: {events:?}");
    assert!(!fenced.exists(), "the fenced marker outlived the repair");
    let summary = group.summary();
    assert!(summary.contains(&format!("{killed}:standby:up")), "{summary:?}");
    assert_one_primary_everywhere(endpoint, newest_primary);
    // Three failovers, each with standbys following the new primary: the
    // hook and apply asked pgpool to attach only nodes it had down (pgpool
    // handles any attach as a failback, cutting sessions meanwhile).
    let pgpool_log = read_log(&group.base.join("pgpool/pgpool.log"));
    let needless: Vec<&str> = pgpool_log.lines().filter(|l| l.contains("invalid failback request")).collect();
    assert!(needless.is_empty(), "attach requests for attached nodes: {needless:?}");
    let attaches = pgpool_log.lines().filter(|l| l.contains("received failback request")).count();
    eprintln!("pgpool_ha: {attaches} attach requests over three failovers, none for an attached node");
    assert!(attaches >= 3, "each failed primary came back through an attach");
    tf.destroy();
    assert!(group.pids().is_empty());
}

#[test]
fn pgpool_ha_bad_input_is_refused_at_plan_time_and_starts_nothing() {
    let group = Group::new("pgpool_ha_bad_input");
    let tf = &group.tf;
    let plan_error = |extra: &str, standbys: u32| {
        group.write(standbys, extra);
        let (code, out) = tf.plan_exit_code(true);
        assert_eq!(code, 1, "the plan should fail:\n{out}");
        out.stderr
    };
    group.write(2, "");
    tf.init();

    // A port of the group's range already in use.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let base = taken.local_addr().unwrap().port() - 3;
    let err = plan_error(&format!("  port_base = {base}\n"), 2);
    // The first busy port of the range is named: ours, or one another test took meanwhile.
    assert!(err.contains("Port in use") && err.contains(&format!("from port_base = {base})")), "{err}");

    // Unknown and reserved setting names, at their keys.
    group.write(2, "");
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    tf.write_config(&hcl.replace("fsync              = \"off\"", "\"Work Mem\" = \"1\"\n    port = \"5\""));
    let (code, out) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{out}");
    let err = out.stderr;
    assert!(err.contains("Invalid setting name") && err.contains("Setting owned by the group"), "{err}");

    // Out of range standbys; synchronous replication without a standby.
    // A parameter PostgreSQL does not know.
    group.write(2, "");
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    tf.write_config(&hcl.replace("fsync              = \"off\"", "wrok_mem = \"4MB\""));
    let (code, out) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{out}");
    assert!(out.stderr.contains("Unknown PostgreSQL parameter") && out.stderr.contains("wrok_mem"), "{}", out.stderr);

    // Values PostgreSQL would refuse at start or reload, refused at plan at their keys.
    let value_cases: &[(&str, &str)] = &[
        ("work_mem = \"lots\"", "postgresql_settings[\"work_mem\"]: work_mem must be a memory size such as \"64MB\""),
        ("work_mem = \"10\"", "postgresql_settings[\"work_mem\"]: work_mem must be between 64kB and 2147483647kB"),
        ("work_mem = \"64mb\"", "\"mb\" is no unit for it; use one of B, kB, MB, GB, TB (case matters)"),
        ("work_mem = \"3TB\"", "work_mem must be between 64kB and 2147483647kB, got \"3TB\""),
        ("shared_buffers = \"5min\"", "postgresql_settings[\"shared_buffers\"]: shared_buffers: \"min\" is no unit for it"),
        ("statement_timeout = \"5 minutes\"", "\"minutes\" is no unit for it; use one of us, ms, s, min, h, d"),
        ("statement_timeout = \"-5s\"", "statement_timeout must be between 0ms and 2147483647ms"),
        ("checkpoint_timeout = \"2d\"", "checkpoint_timeout must be between 30s and 86400s, got \"2d\""),
        ("max_connections = \"0\"", "max_connections must be between 1 and 262143"),
        ("log_min_duration_statement = \"-2\"", "log_min_duration_statement must be between -1ms"),
        ("wal_level = \"max\"", "wal_level must be one of \"minimal\", \"replica\", \"logical\", got \"max\""),
        ("synchronous_commit = \"sometimes\"", "synchronous_commit must be one of"),
        ("jit = \"maybe\"", "jit is a boolean: use \"on\" or \"off\""),
        ("random_page_cost = \"cheap\"", "random_page_cost must be a number, got \"cheap\""),
        ("vacuum_cost_delay = \"1s\"", "vacuum_cost_delay must be between 0ms and 100ms"),
    ];
    for (setting, expected) in value_cases {
        group.write(2, "");
        let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
        let hcl = hcl.replace("    synchronous_commit = \"on\"\n", "");
        tf.write_config(&hcl.replace("fsync              = \"off\"", setting));
        let (code, out) = tf.plan_exit_code(true);
        assert_eq!(code, 1, "{setting}: {out}");
        let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(expected), "{setting}: expected {expected:?} in:\n{}", out.stderr);
    }
    // Units are understood: these plan a create.
    group.write(2, "");
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    let hcl = hcl.replace("    synchronous_commit = \"on\"\n", "");
    tf.write_config(&hcl.replace(
        "fsync              = \"off\"",
        "fsync = \"off\"\n    work_mem = \"64MB\"\n    statement_timeout = \"5min\"\n    checkpoint_timeout = \"1d\"\n    synchronous_commit = \"Remote_Apply\"\n    jit = \"off\"\n    random_page_cost = \"1.1\"",
    ));
    let (code, out) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "values with units must plan:\n{out}");

    // A coordinator host that is no host.
    let err = plan_error("  citus {\n    coordinator_host = \"x'); select 1; --\"\n  }\n", 2);
    let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("citus.coordinator_host must be a host name"), "{err}");

    let err = plan_error("", 9);
    assert!(err.contains("between 0 and 8"), "{err}");
    let err = plan_error("  synchronous_replication = true\n", 0);
    assert!(err.contains("Synchronous replication needs a standby"), "{err}");

    // Values that once crashed the plugin: a duration too large for any clock,
    // and the highest port_base (its last port is 65535).
    let err = plan_error("  timeouts {\n    create = \"99999999999999999999h\"\n  }\n", 2);
    assert!(err.contains("Invalid duration") && err.contains("timeouts.create"), "{err}");
    assert!(!err.contains("Request cancelled") && !err.contains("plugin"), "the plugin crashed:\n{err}");
    group.write(2, &format!("  port_base = {}\n", 65535 - 11 + 1));
    let (code, out) = tf.plan_exit_code(true);
    // 2: the group would be created; 1 only if one of those ports is taken here.
    assert!(code == 2 || out.stderr.contains("Port in use"), "{out}");
    let err = plan_error(&format!("  port_base = {}\n", 65535 - 11 + 2), 2);
    assert!(err.contains("port_base") && err.contains("between 1024 and 65525"), "{err}");

    // A base directory that cannot be created.
    group.write(2, "");
    let bad = std::fs::read_to_string(tf.path().join("main.tf")).unwrap().replace(&group.base.display().to_string(), "/etc/hostname/group");
    tf.write_config(&bad);
    let (code, out) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{out}");
    assert!(out.stderr.contains("Base directory not writable"), "{}", out.stderr);

    assert!(!group.base.exists(), "a refused plan created the base directory");
    assert!(group.pids().is_empty());
}

/// A worker group's whole Citus stack: the coordinator (a plain Citus
/// instance), the worker as a pgpool_ha group with a `citus` block, and
/// citus_cluster registering the worker by the group's primary address.
/// The role the worker group's event hook repoints the coordinator as, and
/// its password: the coordinator asks it for SCRAM over TCP (see
/// `require_failover_password`), so a repoint proves the hook had it.
const FAILOVER_ROLE: &str = "failover_hook";
const FAILOVER_PASSWORD: &str = "hook:S3cret\\pw";

/// The `citus` block's credentials: write-only on Terraform 1.11+, where the
/// state must then hold no trace of them; the plain attribute before.
fn failover_credentials_hcl() -> String {
    let password = serde_json::to_string(FAILOVER_PASSWORD).unwrap();
    if crate::harness::terraform_version() >= (1, 11) {
        format!("    username = \"{FAILOVER_ROLE}\"\n    password_wo = {password}\n    password_wo_version = 1\n")
    } else {
        format!("    username = \"{FAILOVER_ROLE}\"\n    password = {password}\n")
    }
}

/// A superuser role that may log in over TCP only with its password.
fn require_failover_password(coordinator: &crate::harness::PgInstance) {
    let password = FAILOVER_PASSWORD.replace('\'', "''");
    coordinator.sql(&format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE {FAILOVER_ROLE} SUPERUSER LOGIN PASSWORD '{password}'"));
    let hba = coordinator.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all {FAILOVER_ROLE} 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    coordinator.sql("SELECT pg_reload_conf()");
    let without = format!("host=127.0.0.1 port={} user={FAILOVER_ROLE} dbname=postgres connect_timeout=3", coordinator.port());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = runtime.block_on(run_query(&without, "SELECT 1"));
    assert!(refused.is_err(), "{FAILOVER_ROLE} logs in to the coordinator without its password");
}

fn citus_stack_hcl(base: &Path, coordinator: &crate::harness::PgInstance) -> String {
    let mut hcl = required_providers_hcl(&["pgpool", "citus"]);
    hcl.push_str(&format!(
        r#"
provider "citus" {{
  host     = "127.0.0.1"
  port     = {coord}
  username = "postgres"
}}

resource "pgpool_ha" "w1" {{
  name                = "w1"
  base_dir            = "{base}"
  standbys            = 1
  deletion_protection = false
  postgresql_settings = {{
    fsync = "off"
  }}
  pgpool_settings {{
    health_check_period      = 1
    health_check_timeout     = 2
    health_check_max_retries = 0
    sr_check_period          = 1
    num_init_children        = 8
  }}
  failover_settings {{
    monitor_interval_secs = 1
    reconnect_attempts    = 2
    reconnect_interval    = 1
  }}
  citus {{
    coordinator_host = "127.0.0.1"
    coordinator_port = {coord}
{credentials}  }}
}}

resource "citus_cluster" "this" {{
  coordinator {{
    host = "127.0.0.1"
    port = {coord}
  }}
  worker "w1" {{
    host = pgpool_ha.w1.primary_host
    port = pgpool_ha.w1.primary_port
  }}
  rebalance {{
    shard_transfer_mode = "block_writes"
  }}
}}
"#,
        coord = coordinator.port(),
        base = base.display(),
        credentials = failover_credentials_hcl()
    ));
    hcl
}

/// Count and an order-independent digest of every row, through the coordinator.
fn events_fingerprint(coordinator: &crate::harness::PgInstance) -> Result<(String, String), String> {
    let rows = coordinator.sql_result("SELECT count(*)::text, md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)) FROM events")?;
    Ok((rows[0][0].clone().unwrap_or_default(), rows[0][1].clone().unwrap_or_default()))
}

/// pg_dist_node's primary rows of workers as `nodeid:port`.
fn registered_workers(coordinator: &crate::harness::PgInstance) -> Vec<String> {
    coordinator
        .sql("SELECT nodeid || ':' || nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeid")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Polls `done` every 100 ms until it holds (true) or `timeout` passes (false).
fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn node_port_in(state: &Value, name: &str) -> u16 {
    let node = state["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name} in {state}"));
    node["port"].as_u64().unwrap() as u16
}

/// On a failing test, the end of the group's logs (the guard deletes them).
pub(crate) struct LogsOnPanic<'a>(pub(crate) &'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        for file in ["pgpool/pgpool.log", "pgpool/repmgr-event.log", "pgpool/citus-failover.log", "node0/postgres.log", "node0/repmgrd.log", "node1/postgres.log", "node1/repmgrd.log", "node2/repmgrd.log", "node0/rejoin.log", "node1/rejoin.log", "node2/rejoin.log"] {
            let text = read_log(&self.0.join(file));
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- end of {file}:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

#[test]
fn pgpool_ha_citus_worker_failover_repoints_the_coordinator() {
    if !crate::harness::require_citus("pgpool_ha_citus_worker_failover_repoints_the_coordinator") {
        return;
    }
    let coordinator = crate::harness::PgInstance::new(crate::harness::PgOptions::citus());
    require_failover_password(&coordinator);
    let group = Group::new("pgpool_ha_citus");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    tf.write_config(&citus_stack_hcl(&group.base, &coordinator));
    tf.init();
    let started = Instant::now();
    tf.apply_and_assert_idempotent();
    eprintln!("pgpool_ha+citus: worker group and cluster up in {:.1?} (apply and two empty plans)", started.elapsed());

    let w1 = tf.resource_values("pgpool_ha.w1");
    let (port0, port1) = (node_port_in(&w1, "node0"), node_port_in(&w1, "node1"));
    let w1_endpoint = w1["endpoint_port"].as_u64().unwrap() as u16;
    assert_eq!((w1["primary_host"].as_str(), w1["primary_port"].as_u64()), (Some("127.0.0.1"), Some(port0 as u64)), "{w1}");
    let cluster = tf.resource_values("citus_cluster.this");
    let node_id = cluster["worker"]["w1"]["node_id"].as_u64().expect("the worker's node id");
    assert_eq!(registered_workers(&coordinator), [format!("{node_id}:{port0}")]);
    // Every node of the group serves TLS (Citus connects with sslmode=require).
    assert_eq!(scalar(port1, "SHOW ssl"), "on");

    // A distributed table with rows, written through the coordinator onto the worker.
    coordinator.sql(
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL); \
         SELECT create_distributed_table('events', 'id', shard_count => 8); \
         INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
    );
    let before = events_fingerprint(&coordinator).unwrap();
    assert_eq!(before.0, "2000");
    // Asynchronous replication: the standby has every row before the crash.
    let lsn = scalar(port0, "SELECT pg_current_wal_lsn()::text");
    wait_until("the standby to replay the rows", Duration::from_secs(30), || {
        sql(port1, &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")).is_ok_and(|r| r[0][0].as_deref() == Some("t"))
    });

    // kill -9 of the worker group's primary: repmgrd promotes node1, and the
    // event script repoints the coordinator without Terraform.
    let postmaster = pid_from(&group.base.join("node0/data/postmaster.pid")).expect("node0's postmaster pid");
    let killed_at = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(postmaster, libc::SIGKILL) };
    let failover_log = group.base.join("pgpool/citus-failover.log");
    let repointed = eventually(Duration::from_secs(90), || registered_workers(&coordinator) == [format!("{node_id}:{port1}")]);
    assert!(
        repointed,
        "pg_dist_node still names {:?} 90 s after the kill; citus-failover.log:\n{}\nnode1's repmgrd.log:\n{}",
        registered_workers(&coordinator),
        read_log(&failover_log),
        read_log(&group.base.join("node1/repmgrd.log"))
    );
    let repointed_in = killed_at.elapsed();
    eprintln!("pgpool_ha+citus: pg_dist_node points at the new primary {repointed_in:.1?} after kill -9 of the worker's primary");
    eprintln!("pgpool_ha+citus: citus-failover.log:\n{}", read_log(&failover_log).trim_end());

    // A distributed query returns every row, from the promoted node.
    let mut after = Err(String::new());
    eventually(Duration::from_secs(30), || {
        after = events_fingerprint(&coordinator);
        after.as_ref().is_ok_and(|a| *a == before)
    });
    assert_eq!(after, Ok(before.clone()), "rows lost or unreachable after the failover");
    eprintln!("pgpool_ha+citus: distributed query after failover: {} rows, md5 {} (same as before), {:.1?} after the kill", before.0, before.1, killed_at.elapsed());

    // The event hook fences the old primary and rejoins it as a standby
    // (rejoin_failed_primary defaults to true): the group is whole again
    // without Terraform, and citus_cluster follows the new primary.
    wait_until("node0 rejoined and attached by the event hook", Duration::from_secs(120), || {
        sql(port0, "SELECT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("t"))
            && all_attached(w1_endpoint)
    });
    eprintln!("pgpool_ha+citus: node0 rejoined as a standby {:.1?} after the kill", killed_at.elapsed());
    tf.assert_plan_empty();
    eprintln!("pgpool_ha+citus: the whole stack's plan is empty after the failover (with and without refresh)");
    let refreshed = tf.run(&["apply", "-refresh-only", "-auto-approve"]);
    assert!(refreshed.success(), "{refreshed}");
    let w1 = tf.resource_values("pgpool_ha.w1");
    assert_eq!(w1["primary_port"].as_u64(), Some(port1 as u64), "{w1}");
    let summary: Vec<String> = w1["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{}:{}:{}", n["name"].as_str().unwrap(), n["role"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, ["node0:standby:up", "node1:primary:up"]);
    // The hook logged in with the password (the coordinator accepts no other way);
    // on Terraform 1.11 it was write-only and the state holds no trace of it.
    let hook_log = read_log(&failover_log);
    let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    if crate::harness::terraform_version() >= (1, 11) {
        assert!(!state.contains("S3cret"), "the write-only coordinator password is in the state");
        eprintln!("pgpool_ha+citus: the coordinator password was write-only; the state does not hold it");
    }
    assert!(!hook_log.contains("S3cret"), "the password reached citus-failover.log:\n{hook_log}");
    let cluster = tf.resource_values("citus_cluster.this");
    let worker = &cluster["worker"]["w1"];
    assert_eq!((worker["node_id"].as_u64(), worker["port"].as_u64()), (Some(node_id), Some(port1 as u64)), "{worker}");
    assert_eq!(registered_workers(&coordinator), [format!("{node_id}:{port1}")]);
    assert_eq!(events_fingerprint(&coordinator).unwrap(), before);

    tf.destroy();
    assert!(group.pids().is_empty(), "processes left after destroy: {:?}", group.pids());
}

/// Postmasters of the group that accept connections. The lock file is the
/// source: a process table scan would also catch initdb's single-user
/// backends and freshly forked children that have not renamed themselves
/// yet, both of which end on their own.
fn postmasters(group: &Group) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(&group.base) else { return Vec::new() };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|node| std::fs::read_to_string(node.path().join("data/postmaster.pid")).ok())
        .filter_map(|lock| {
            let lines: Vec<&str> = lock.lines().collect();
            // Line 8 is the postmaster's status; single-user mode writes none.
            let status = lines.get(7).map(|s| s.trim())?;
            let pid = lines.first()?.trim().parse::<i32>().ok()?;
            (matches!(status, "ready" | "standby") && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn pgpool_ha_ctrl_c_during_apply_leaves_running_nodes_running() {
    let group = Group::new("pgpool_ha_ctrl_c");
    group.write(2, "  deletion_protection = false\n");
    group.tf.init();
    let mut apply = group.tf.spawn(&["apply", "-auto-approve"]);
    wait_until("the primary's postmaster to run", Duration::from_secs(60), || !postmasters(&group).is_empty());
    let running = postmasters(&group);
    // Ctrl-C reaches the whole foreground process group: terraform and the provider.
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe { libc::killpg(apply.id() as i32, libc::SIGINT) };
    let status = apply.wait().expect("terraform exits");
    eprintln!("pgpool_ha: terraform exited with {status} after Ctrl-C; postmasters running: {running:?}");
    thread::sleep(Duration::from_secs(2));
    for pid in &running {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "Ctrl-C stopped postmaster {pid}");
    }

    // The next apply converges, whatever the interrupted one left.
    group.tf.apply_and_assert_idempotent();
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up", "node2:standby:up"]);
    group.tf.destroy();
    assert!(group.pids().is_empty(), "destroy left processes: {:?}", group.pids());
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// A create that adopts a group already in base_dir and then fails leaves
/// the group's data where it was; destroy stops the group's processes and
/// no other, even one whose command line names the base directory.
#[test]
fn pgpool_ha_failed_adopting_create_keeps_the_data_and_destroy_spares_other_processes() {
    let group = Group::new("pgpool_ha_adopt");
    let tf = &group.tf;
    group.write(1, "  deletion_protection = false\n");
    tf.init();
    tf.apply();
    let port_base = group.state()["port_base"].as_u64().unwrap();
    sql_ok(group.node_port("node0"), "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 500)");
    sql_ok(group.node_port("node0"), "CHECKPOINT");

    // Terraform forgets the group; it is stopped in the order the provider
    // stops it (pgpool first, so it marks no node down), its files stay.
    tf.expect_success(tf.run(&["state", "rm", "pgpool_ha.g"]));
    let stop_by_pid_file = |file: PathBuf| {
        // pgpool pads its pid file with NUL bytes: the leading digits.
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let digits: String = text.trim_start().chars().take_while(char::is_ascii_digit).collect();
        if let Ok(pid) = digits.parse::<i32>() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            wait_until("a group process to stop", Duration::from_secs(30), || !Path::new(&format!("/proc/{pid}")).exists());
        }
    };
    stop_by_pid_file(group.base.join("pgpool/pgpool.pid"));
    for node in ["node1", "node0"] {
        stop_by_pid_file(group.base.join(node).join("repmgrd.pid"));
    }
    for node in ["node1", "node0"] {
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--", PG_CTL, "-D"])
            .arg(group.base.join(node).join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .status()
            .unwrap();
        assert!(status.success(), "could not stop {node}");
    }
    wait_until("the group's processes to go", Duration::from_secs(30), || group.pids().is_empty());
    assert!(group.base.join(".shardform-pgpool-ha").exists(), "the group marker must still be there");

    // A create over it that fails at apply: PostgreSQL will not start with
    // ssl on and no certificate (nothing plan can know).
    group.write(1, &format!("  deletion_protection = false\n  port_base = {port_base}\n"));
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    tf.write_config(&hcl.replace("fsync              = \"off\"", "fsync = \"off\"\n    ssl = \"on\""));
    let failed = tf.run(&["apply", "-auto-approve", "-input=false"]);
    assert!(!failed.success(), "the create was meant to fail:\n{failed}");
    let output = format!("{}{}", failed.stdout, failed.stderr);
    let flat = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("The group found in base_dir is left as it was"), "{output}");
    assert!(group.base.join("node0/data/PG_VERSION").exists(), "the failed create removed the adopted group's data");
    assert!(tf.resource_addresses().is_empty());

    // Adopted for real this time: the rows are still there.
    group.write(1, &format!("  deletion_protection = false\n  port_base = {port_base}\n"));
    tf.apply();
    assert_eq!(scalar(group.node_port("node0"), "SELECT count(*) FROM kept"), "500");

    // A process that is not the group's, naming its base directory, survives destroy.
    let mut tail = Command::new("tail")
        .arg("-f")
        .arg(group.base.join("node0/postgres.log"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(group.pids().contains(&(tail.id() as i32)), "the tail must name the base directory");
    tf.destroy();
    assert!(alive(tail.id()), "destroy killed a process that is not the group's (tail -f of its log)");
    let left: Vec<i32> = group.pids().into_iter().filter(|p| *p != tail.id() as i32).collect();
    assert!(left.is_empty(), "group processes left after destroy: {left:?}");
    let _ = tail.kill();
    let _ = tail.wait();
}

/// A failover between `terraform plan -out` and the apply of that plan:
/// the apply stops with a clear message before changing anything, never
/// "Provider produced inconsistent result"; the next plan works.
#[test]
fn pgpool_ha_failover_between_plan_and_apply_of_the_saved_plan_is_reported() {
    let group = Group::new("pgpool_ha_saved_plan_failover");
    let tf = &group.tf;
    group.write(1, "  deletion_protection = false\n");
    tf.init();
    tf.apply();
    let (port0, port1) = (group.node_port("node0"), group.node_port("node1"));
    assert_eq!(group.state()["primary_port"].as_u64(), Some(port0 as u64));

    // A saved plan of an ordinary change (a reloadable setting).
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    tf.write_config(&hcl.replace("synchronous_commit = \"on\"", "synchronous_commit = \"on\"\n    work_mem = \"8MB\""));
    tf.expect_success(tf.run(&["plan", "-input=false", "-out=saved.tfplan"]));

    // The primary dies; repmgrd promotes node1.
    let postmaster = std::fs::read_to_string(group.base.join("node0/data/postmaster.pid")).unwrap();
    let pid: i32 = postmaster.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("node1 to be promoted", Duration::from_secs(90), || {
        sql(port1, "SELECT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("f"))
    });
    let work_mem_before = scalar(port1, "SHOW work_mem");

    let out = tf.run(&["apply", "-input=false", "saved.tfplan"]);
    assert!(!out.success(), "the saved plan must not apply after a failover:\n{out}");
    let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("inconsistent result"), "{}", out.stderr);
    assert!(
        flat.contains("The primary changed since the plan; plan again") && flat.contains(&format!("port {port1}")),
        "{}",
        out.stderr
    );
    assert_eq!(scalar(port1, "SHOW work_mem"), work_mem_before, "the refused apply changed a setting");

    // Planned again, the new primary is in the state and the plan is usable.
    let (code, plan) = tf.plan_exit_code(true);
    assert_ne!(code, 1, "the plan after the failover must work:\n{plan}");
    assert_eq!(group.state()["primary_port"].as_u64(), Some(port1 as u64));
}
