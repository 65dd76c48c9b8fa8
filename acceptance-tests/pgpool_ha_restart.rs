//! `pgpool_ha`: a restart-only PostgreSQL parameter changed by apply is put
//! into effect by restarting the nodes (standbys first, then the primary with
//! repmgrd paused), without a failover, and the plan says so beforehand.

use std::time::{Duration, Instant};

use crate::pgpool_ha::{pool_nodes, scalar, sql, sql_in, sql_ok, Group, LogsOnPanic, WriteLoad};

const NODES: [&str; 3] = ["node0", "node1", "node2"];

/// The test's settings, in place of the default `fsync` line of `Group::write`.
fn write(group: &Group, max_connections: u32, work_mem: &str) {
    group.write(2, "  deletion_protection = false\n");
    let main = group.tf.path().join("main.tf");
    let hcl = std::fs::read_to_string(&main).unwrap();
    let settings = format!("fsync = \"off\"\n    max_connections = \"{max_connections}\"\n    work_mem = \"{work_mem}\"");
    let replaced = hcl.replace("fsync              = \"off\"", &settings);
    assert_ne!(
        replaced, hcl,
        "Group::write no longer writes the fsync line this test replaces"
    );
    group.tf.write_config(&replaced);
}

/// `SHOW name` on every node, by node name.
fn shown(group: &Group, name: &str) -> Vec<String> {
    NODES
        .iter()
        .map(|n| {
            format!(
                "{n}={}",
                scalar(group.node_port(n), &format!("SHOW {name}"))
            )
        })
        .collect()
}

fn expect_everywhere(value: &str) -> Vec<String> {
    NODES.iter().map(|n| format!("{n}={value}")).collect()
}

/// Each node's postmaster start time.
fn started_at(group: &Group) -> Vec<String> {
    NODES
        .iter()
        .map(|n| {
            scalar(
                group.node_port(n),
                "SELECT pg_postmaster_start_time()::text",
            )
        })
        .collect()
}

/// Nothing pending, the same primary everywhere, repmgrd running and not paused.
fn assert_settled(group: &Group, primary_port: u16) {
    for n in NODES {
        let port = group.node_port(n);
        let pending = scalar(
            port,
            "SELECT count(*) FROM pg_settings WHERE pending_restart",
        );
        assert_eq!(pending, "0", "{n} still has a parameter pending a restart");
        let repmgrd = sql_in(
            port,
            "repmgr",
            "SELECT repmgr.repmgrd_is_running()::text, repmgr.repmgrd_is_paused()::text",
        )
        .unwrap();
        assert_eq!(
            (repmgrd[0][0].as_deref(), repmgrd[0][1].as_deref()),
            (Some("true"), Some("false")),
            "{n}: repmgrd must be running and not paused"
        );
        let recovery = scalar(port, "SELECT pg_is_in_recovery()::text");
        assert_eq!(
            recovery == "false",
            port == primary_port,
            "{n}: pg_is_in_recovery() = {recovery}"
        );
    }
    assert_eq!(
        group.state()["primary"].as_str(),
        Some("node0"),
        "the primary changed"
    );
    assert_eq!(
        group.summary(),
        ["node0:primary:up", "node1:standby:up", "node2:standby:up"]
    );
    let repmgr_view = sql_in(
        primary_port,
        "repmgr",
        "SELECT node_name || ':' || type || ':' || active::text FROM repmgr.nodes ORDER BY node_id",
    )
    .unwrap();
    let repmgr_view: Vec<String> = repmgr_view
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(
        repmgr_view,
        [
            "node0:primary:true",
            "node1:standby:true",
            "node2:standby:true"
        ],
        "repmgr's view"
    );
    let promotions = sql_in(
        primary_port,
        "repmgr",
        "SELECT count(*)::text FROM repmgr.events WHERE event IN ('repmgrd_failover_promote', 'standby_promote')",
    )
    .unwrap();
    assert_eq!(
        promotions[0][0].as_deref(),
        Some("0"),
        "repmgr promoted a node"
    );
    let pool = pool_nodes(group.endpoint());
    assert!(
        pool.iter().all(|p| p.1 == "up" || p.1 == "waiting"),
        "pgpool has a node detached: {pool:?}"
    );
    let pool_primary: Vec<&str> = pool
        .iter()
        .filter(|p| p.2 == "primary")
        .map(|p| p.0.as_str())
        .collect();
    assert_eq!(pool_primary, ["0"], "pgpool's primary: {pool:?}");
}

#[test]
fn pgpool_ha_restart_only_settings_restart_the_nodes_without_failover() {
    let group = Group::new("pgpool_ha_restart");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    write(&group, 100, "4MB");
    tf.init();
    tf.apply_and_assert_idempotent();
    let endpoint = group.endpoint();
    let port0 = group.node_port("node0");
    assert_eq!(shown(&group, "max_connections"), expect_everywhere("100"));
    assert_settled(&group, port0);
    sql_ok(endpoint, "CREATE TABLE w (id bigint PRIMARY KEY)");
    let before = started_at(&group);

    // A restart-only and a reload parameter in one change: the plan warns,
    // naming the nodes apply restarts and the pause of writes.
    write(&group, 120, "8MB");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "{plan}");
    let text = format!("{}\n{}", plan.stdout, plan.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("Restart needed")
            && text.contains("max_connections takes effect only when PostgreSQL restarts"),
        "{plan}"
    );
    assert!(
        text.contains("the standbys (node1, node2) one at a time")
            && text.contains("the primary (node0) with repmgrd paused"),
        "{plan}"
    );
    assert!(text.contains("Writes through the endpoint pause"), "{plan}");
    assert!(
        !text.contains("work_mem takes effect only"),
        "work_mem needs no restart:\n{plan}"
    );
    eprintln!(
        "pgpool_ha_restart: plan warns: {}",
        text[text.find("Restart needed").unwrap()..]
            .chars()
            .take(420)
            .collect::<String>()
    );

    // Apply under a steady write load through the endpoint, with two more
    // sessions idle across it.
    let idle = IdleSessions::open(endpoint, 2);
    let load = WriteLoad::start(endpoint);
    crate::harness::wait_until("some writes", Duration::from_secs(10), || {
        load.acked() >= 20
    });
    let started = Instant::now();
    tf.apply();
    let applied_in = started.elapsed();
    // A write right after apply, on the same primary.
    sql_ok(endpoint, "INSERT INTO w VALUES (-1)");
    assert_eq!(
        scalar(
            endpoint,
            "SELECT inet_server_port() FROM (SELECT 1) s FOR UPDATE"
        ),
        port0.to_string()
    );
    // The restarts ended the idle sessions' backends: pgpool ends those
    // sessions and keeps every node attached and the same primary
    // (assert_settled below), rather than detach the primary and wait for
    // ever for a new one (apply would time out first).
    let idle_after = idle.next_statements();
    eprintln!("pgpool_ha_restart: sessions idle across the restarts, their next statement: {idle_after:?}");
    assert!(idle_after.iter().all(Result::is_err), "a session outlived the restart of its nodes: {idle_after:?}");
    let (acked, worst_gap) = load.finish();
    eprintln!(
        "pgpool_ha_restart: apply restarted the group in {applied_in:.1?}; {} writes acknowledged through the endpoint meanwhile, longest gap without a write {worst_gap:.1?}",
        acked.len()
    );
    // Every acknowledged id, by id (a count could hide a lost write behind
    // one that was written but whose acknowledgement was lost).
    let present: std::collections::BTreeSet<i64> = sql_ok(port0, "SELECT id FROM w WHERE id > 0")
        .into_iter()
        .filter_map(|row| row[0].as_deref().and_then(|id| id.parse().ok()))
        .collect();
    let missing: Vec<i64> = acked.iter().copied().filter(|id| !present.contains(id)).collect();
    assert!(!acked.is_empty(), "no write was acknowledged during the restarts");
    assert!(
        missing.is_empty(),
        "acknowledged writes are missing after the restarts: ids {missing:?} ({} of {} acknowledged)",
        missing.len(),
        acked.len()
    );

    assert_eq!(shown(&group, "max_connections"), expect_everywhere("120"));
    assert_eq!(shown(&group, "work_mem"), expect_everywhere("8MB"));
    let after = started_at(&group);
    for (i, n) in NODES.iter().enumerate() {
        assert_ne!(before[i], after[i], "{n} was not restarted");
    }
    assert_settled(&group, port0);
    tf.assert_plan_empty();

    // Lowered: the primary restarts first (a standby may not run with fewer
    // connections than its primary), and the group settles the same way.
    write(&group, 110, "8MB");
    let started = Instant::now();
    tf.apply_and_assert_idempotent();
    eprintln!(
        "pgpool_ha_restart: max_connections lowered to 110 in {:.1?} (apply and two empty plans)",
        started.elapsed()
    );
    assert_eq!(shown(&group, "max_connections"), expect_everywhere("110"));
    sql_ok(endpoint, "INSERT INTO w VALUES (-2)");
    assert_settled(&group, port0);

    tf.destroy();
    let left = group.pids();
    assert!(left.is_empty(), "processes left after destroy: {left:?}");
    assert!(
        sql(port0, "SELECT 1").is_err(),
        "node0 still answers after destroy"
    );
}

/// Client sessions through the endpoint, left idle after one statement.
/// When a node they use shuts down, its backends send the shutdown message
/// (57P01) and the idle pgpool children read it at once: with pgpool 4.3's
/// default `failover_on_backend_shutdown = on` each then detaches the node.
struct IdleSessions {
    runtime: tokio::runtime::Runtime,
    clients: Vec<tokio_postgres::Client>,
}

impl IdleSessions {
    fn open(port: u16, count: usize) -> IdleSessions {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3");
        let clients = (0..count)
            .map(|_| {
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                        .await
                        .unwrap_or_else(|e| panic!("session on port {port}: {e}"));
                    tokio::spawn(connection);
                    client.simple_query("SELECT 1").await.unwrap_or_else(|e| panic!("SELECT 1 on port {port}: {e}"));
                    client
                })
            })
            .collect();
        IdleSessions { runtime, clients }
    }

    /// Each session's next statement: an error once its backend has ended.
    fn next_statements(&self) -> Vec<Result<(), String>> {
        self.clients
            .iter()
            .map(|client| {
                self.runtime.block_on(async {
                    match tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1")).await {
                        Err(_) => Err("no answer within 10s".to_string()),
                        Ok(result) => result.map(drop).map_err(|e| e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string())),
                    }
                })
            })
            .collect()
    }
}

/// What a node restart interrupted between its pause and its end leaves (the
/// provider killed): repmgrd paused with the provider's marker, pgpool's
/// health checks off. Both show in the plan, and apply undoes them.
#[test]
fn pgpool_ha_an_interrupted_restart_shows_in_the_plan_and_apply_undoes_it() {
    let group = Group::new("pgpool_ha_interrupted_restart");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    group.write(1, "  deletion_protection = false\n");
    tf.init();
    tf.apply_and_assert_idempotent();
    let node0 = group.node_port("node0");

    // The state the restart code leaves while it runs, made by hand.
    let paused = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/repmgr", "-f"])
        .arg(group.base.join("node0/repmgr.conf"))
        .args(["service", "pause"])
        .output()
        .unwrap();
    assert!(paused.status.success(), "{}", String::from_utf8_lossy(&paused.stderr));
    std::fs::write(group.base.join("repmgrd-paused-by-apply"), "repmgrd paused by apply\n").unwrap();
    let conf_path = group.base.join("pgpool/pgpool.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let off: String = conf
        .lines()
        .map(|l| if l.starts_with("health_check_period") { "health_check_period = 0".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(off, conf);
    std::fs::write(&conf_path, off).unwrap();
    crate::harness::wait_until("repmgrd to pause", Duration::from_secs(10), || {
        sql_in(node0, "repmgr", "SELECT repmgr.repmgrd_is_paused()::text").is_ok_and(|r| r[0][0].as_deref() == Some("true"))
    });

    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "{plan}");
    // Terraform folds the similar warnings into one; the attributes say it all.
    assert!(plan.stdout.contains("\"checks_off\" -> (known after apply)"), "{plan}");
    assert_eq!(plan.stdout.matches("= \"unmonitored\"").count(), 2, "{plan}");
    assert!(plan.stdout.contains("Group needs repair"), "{plan}");
    eprintln!("pgpool_ha_restart: the plan after an interrupted restart shows pgpool_status checks_off and both nodes unmonitored");

    tf.apply_and_assert_idempotent();
    for n in ["node0", "node1"] {
        let state = sql_in(group.node_port(n), "repmgr", "SELECT repmgr.repmgrd_is_paused()::text").unwrap();
        assert_eq!(state[0][0].as_deref(), Some("false"), "{n}: repmgrd still paused");
    }
    assert!(!group.base.join("repmgrd-paused-by-apply").exists());
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(conf.contains("health_check_period = 1\n"), "health checks still off");
    let shown = pool_nodes(group.endpoint());
    assert!(shown.iter().all(|p| p.1 == "up" || p.1 == "waiting"), "{shown:?}");
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);
    tf.destroy();
    assert!(group.pids().is_empty());
}
