//! `citus_cluster` through the real Terraform CLI against real Citus nodes.

use std::time::Duration;

use crate::harness::{
    require_citus, required_providers_hcl, wait_until, CitusCluster, PgInstance, Workdir,
};

struct WorkerDecl<'a> {
    name: &'a str,
    node: &'a PgInstance,
}

/// A configuration for the cluster: provider defaults for the connection, a
/// fast transfer mode (the tests are not about the slow one unless they say so).
fn config(coordinator: &PgInstance, workers: &[WorkerDecl], extra: &str) -> String {
    config_with_mode(coordinator, workers, extra, "block_writes")
}

fn config_with_mode(
    coordinator: &PgInstance,
    workers: &[WorkerDecl],
    extra: &str,
    mode: &str,
) -> String {
    let mut hcl = required_providers_hcl(&["citus"]);
    hcl.push_str(&format!(
        "provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {}\n  username = \"postgres\"\n}}\n\n",
        coordinator.port()
    ));
    hcl.push_str("resource \"citus_cluster\" \"this\" {\n");
    hcl.push_str(&format!(
        "  coordinator {{\n    host = \"127.0.0.1\"\n    port = {}\n  }}\n",
        coordinator.port()
    ));
    for w in workers {
        hcl.push_str(&format!(
            "  worker \"{}\" {{\n    host = \"127.0.0.1\"\n    port = {}\n  }}\n",
            w.name,
            w.node.port()
        ));
    }
    hcl.push_str(&format!(
        "  rebalance {{\n    shard_transfer_mode = \"{mode}\"\n  }}\n"
    ));
    hcl.push_str(extra);
    hcl.push_str("}\n");
    hcl
}

/// Registered primary workers as `port` strings, sorted as strings.
fn registered_worker_ports(coordinator: &PgInstance) -> Vec<String> {
    let mut ports: Vec<String> = coordinator
        .sql("SELECT nodeport::text FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    ports.sort();
    ports
}

fn placements_on(coordinator: &PgInstance, port: u16) -> i64 {
    let rows = coordinator.sql(&format!(
        "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n ON n.groupid = p.groupid \
         AND n.noderole = 'primary' WHERE n.nodeport = {port}"
    ));
    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
}

/// Count and an order-independent digest of every row of `events`.
fn table_fingerprint(coordinator: &PgInstance) -> (String, String) {
    let rows = coordinator.sql("SELECT count(*)::text, md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)) FROM events");
    (
        rows[0][0].clone().unwrap(),
        rows[0][1].clone().unwrap_or_default(),
    )
}

fn create_events_table(coordinator: &PgInstance, rows: i64, shards: i64) {
    coordinator.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL); \
         SELECT create_distributed_table('events', 'id', shard_count => {shards}); \
         INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;"
    ));
}

#[test]
fn citus_cluster_lifecycle_scale_out_scale_in_import() {
    if !require_citus("citus_cluster_lifecycle_scale_out_scale_in_import") {
        return;
    }
    let cluster = CitusCluster::start(4);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_lifecycle");

    // Three workers registered; the next plan is empty.
    let three = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
    ];
    tf.write_config(&config(coord, &three, ""));
    tf.init();
    tf.apply_and_assert_idempotent();
    let mut expected: Vec<String> = w[..3].iter().map(|n| n.port().to_string()).collect();
    expected.sort();
    assert_eq!(registered_worker_ports(coord), expected);

    create_events_table(coord, 20_000, 32);
    let before = table_fingerprint(coord);
    tf.assert_plan_empty();

    // A fourth worker: shards move onto it in the same apply.
    let four = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
        WorkerDecl {
            name: "w4",
            node: &w[3],
        },
    ];
    tf.write_config(&config(coord, &four, ""));
    tf.apply_and_assert_idempotent();
    assert!(
        placements_on(coord, w[3].port()) > 0,
        "the new worker got no shards"
    );
    assert_eq!(table_fingerprint(coord), before);

    // w2 leaves: drained, then removed; every row is still there.
    let without_w2 = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
        WorkerDecl {
            name: "w4",
            node: &w[3],
        },
    ];
    tf.write_config(&config(coord, &without_w2, ""));
    tf.apply_and_assert_idempotent();
    assert!(
        !registered_worker_ports(coord).contains(&w[1].port().to_string()),
        "w2 is still registered"
    );
    assert_eq!(table_fingerprint(coord), before);

    // Import gives the same state.
    tf.import_and_compare(
        "citus_cluster.this",
        &format!("127.0.0.1:{}", coord.port()),
        &["rebalance", "timeouts"],
    );

    // Destroy by default forgets the cluster and leaves every node registered.
    tf.destroy();
    assert_eq!(registered_worker_ports(coord).len(), 3);
    assert_eq!(table_fingerprint(coord), before);
}

#[test]
fn citus_cluster_drift_shows_in_plan_and_is_repaired() {
    if !require_citus("citus_cluster_drift_shows_in_plan_and_is_repaired") {
        return;
    }
    let cluster = CitusCluster::start(2);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_drift");
    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config(coord, &two, ""));
    tf.init();
    tf.apply_and_assert_idempotent();

    // Someone flips a property by hand: the plan shows it, apply repairs it.
    coord.sql(&format!(
        "SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', false)",
        w[1].port()
    ));
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "a hand-made change must show in the plan:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("should_have_shards"),
        "{}",
        plan.stdout
    );
    tf.apply_and_assert_idempotent();
    let flag = coord.sql(&format!(
        "SELECT shouldhaveshards::text FROM pg_dist_node WHERE nodeport = {}",
        w[1].port()
    ));
    assert_eq!(flag[0][0].as_deref(), Some("true"));

    // A worker disabled by hand is drift too; apply activates it again.
    coord.sql(&format!(
        "SELECT citus_disable_node('127.0.0.1', {}, synchronous => true)",
        w[1].port()
    ));
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "a disabled worker must show in the plan:\n{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("is_active"), "{}", plan.stdout);
    tf.apply_and_assert_idempotent();
    let active = coord.sql(&format!(
        "SELECT isactive::text FROM pg_dist_node WHERE nodeport = {}",
        w[1].port()
    ));
    assert_eq!(active[0][0].as_deref(), Some("true"));

    // Owned Citus settings reach every node; one node losing a setting is drift.
    let setting =
        "  settings = {\n    \"citus.max_background_task_executors_per_node\" = \"2\"\n  }\n";
    tf.write_config(&config(coord, &two, setting));
    tf.apply_and_assert_idempotent();
    for node in cluster.nodes() {
        let value = node.sql("SHOW citus.max_background_task_executors_per_node");
        assert_eq!(value[0][0].as_deref(), Some("2"), "port {}", node.port());
    }
    w[0].sql("ALTER SYSTEM RESET citus.max_background_task_executors_per_node");
    w[0].sql("SELECT pg_reload_conf()");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "a lost setting must show in the plan:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("citus.max_background_task_executors_per_node"),
        "{}",
        plan.stdout
    );
    tf.apply_and_assert_idempotent();
    let value = w[0].sql("SELECT setting FROM pg_file_settings WHERE name = 'citus.max_background_task_executors_per_node' \
         AND sourcefile LIKE '%postgresql.auto.conf'");
    assert_eq!(value[0][0].as_deref(), Some("2"));

    // Dropping the setting from the configuration resets it on every node.
    tf.write_config(&config(coord, &two, ""));
    tf.apply_and_assert_idempotent();
    for node in cluster.nodes() {
        let left = node.sql("SELECT count(*)::text FROM pg_file_settings WHERE name LIKE 'citus.%' AND sourcefile LIKE '%postgresql.auto.conf'");
        assert_eq!(left[0][0].as_deref(), Some("0"), "port {}", node.port());
    }
}

#[test]
fn citus_cluster_worker_down_is_reported_and_blocks_only_itself() {
    if !require_citus("citus_cluster_worker_down_is_reported_and_blocks_only_itself") {
        return;
    }
    let cluster = CitusCluster::start(4);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_worker_down");
    let three = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
    ];
    tf.write_config(&config(coord, &three, ""));
    tf.init();
    tf.apply_and_assert_idempotent();
    create_events_table(coord, 2_000, 8);
    let before_nodes = registered_worker_ports(coord);

    w[2].stop();
    // The plan still works and reports the node.
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "plan must report the stopped worker:\n{}{}",
        plan.stdout, plan.stderr
    );
    assert!(plan.stdout.contains("reachable"), "{}", plan.stdout);

    // Adding w4 while w3 is down: a clear error naming w3, nothing else changes.
    let four = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
        WorkerDecl {
            name: "w4",
            node: &w[3],
        },
    ];
    tf.write_config(&config(coord, &four, ""));
    let failed = tf.apply_expect_error();
    assert!(
        failed.stderr.contains("w3") && failed.stderr.contains("Node unreachable"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        registered_worker_ports(coord),
        before_nodes,
        "nothing may change while a node is down"
    );

    // Removing the stopped worker that holds the only placements: refused, tables named.
    let without_w3 = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config(coord, &without_w3, ""));
    let refused = tf.apply_expect_error();
    assert!(
        refused.stderr.contains("events"),
        "the refusal must name the table:\n{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("citus_update_node"),
        "the refusal must offer the way out:\n{}",
        refused.stderr
    );
    assert_eq!(registered_worker_ports(coord), before_nodes);

    // Back up: the removal drains and converges.
    w[2].start();
    tf.apply_and_assert_idempotent();
    assert_eq!(registered_worker_ports(coord).len(), 2);
    assert_eq!(
        coord.sql("SELECT count(*)::text FROM events")[0][0].as_deref(),
        Some("2000")
    );
}

#[test]
fn citus_cluster_killed_during_drain_converges_on_next_apply() {
    if !require_citus("citus_cluster_killed_during_drain_converges_on_next_apply") {
        return;
    }
    let cluster = CitusCluster::start(3);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_killed_during_drain");
    let three = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
    ];
    // Logical moves take seconds each: long enough to kill Terraform mid-drain.
    tf.write_config(&config_with_mode(coord, &three, "", "force_logical"));
    tf.init();
    tf.apply_and_assert_idempotent();
    create_events_table(coord, 5_000, 12);
    let before = table_fingerprint(coord);

    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config_with_mode(coord, &two, "", "force_logical"));
    let mut apply = tf.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    wait_until("a drain job to run", Duration::from_secs(120), || {
        let rows = coord.sql(
            "SELECT count(*)::text FROM pg_dist_background_task WHERE status::text = 'running'",
        );
        rows[0][0].as_deref() != Some("0")
    });
    crate::harness::process::kill_process_group(&apply);
    let _ = apply.wait();

    // The next apply adopts or finishes the job and converges.
    tf.apply_and_assert_idempotent();
    assert!(!registered_worker_ports(coord).contains(&w[2].port().to_string()));
    assert_eq!(
        table_fingerprint(coord),
        before,
        "rows changed across the interrupted drain"
    );
}

#[test]
fn citus_cluster_bad_input_is_rejected_at_plan_time() {
    // Validation needs no Citus: nothing is created.
    let tf = Workdir::new("citus_cluster_bad_input");
    let head = required_providers_hcl(&["citus"]);
    let cases = [
        (
            "port = 70000",
            "worker \"w1\" {\n host = \"127.0.0.1\"\n port = 70000\n }",
            "worker[\"w1\"].port",
        ),
        (
            "empty host",
            "worker \"w1\" {\n host = \"\"\n }",
            "worker[\"w1\"].host must be a host name",
        ),
        (
            "a worker host that is SQL",
            "worker \"w1\" {\n host = \"x'); select 1; --\"\n }",
            "worker[\"w1\"].host must be a host name (letters, digits, `-` and `.`",
        ),
        (
            "a worker host with a port",
            "worker \"w1\" {\n host = \"10.0.0.1:5432\"\n }",
            "worker[\"w1\"].host must be a host name",
        ),
        (
            "a worker address out of range",
            "worker \"w1\" {\n host = \"999.0.0.1\"\n }",
            "worker[\"w1\"].host must be a host name",
        ),
        (
            "a connect_host with a space",
            "worker \"w1\" {\n host = \"10.0.0.1\"\n connect_host = \"db host\"\n }",
            "worker[\"w1\"].connect_host must be a host name",
        ),
        (
            "bad name",
            "worker \"w 1\" {\n host = \"10.0.0.1\"\n }",
            "Invalid name",
        ),
        (
            "duplicate address",
            "worker \"w1\" {\n host = \"10.0.0.1\"\n }\n worker \"w2\" {\n host = \"10.0.0.1\"\n }",
            "Duplicate node address",
        ),
        (
            "duplicate name",
            "worker \"w1\" {\n host = \"10.0.0.1\"\n }\n worker \"w1\" {\n host = \"10.0.0.2\"\n }",
            "Duplicate worker block",
        ),
        (
            "bad transfer mode",
            "rebalance {\n shard_transfer_mode = \"fast\"\n }",
            "shard_transfer_mode must be one of",
        ),
        (
            "not a citus setting",
            "settings = {\n \"work_mem\" = \"1GB\"\n }",
            "Not a Citus setting",
        ),
    ];
    for (what, body, expected) in cases {
        tf.write_config(&format!(
            "{head}\nresource \"citus_cluster\" \"c\" {{\n coordinator {{\n host = \"127.0.0.1\"\n port = 1\n }}\n {body}\n}}\n"
        ));
        if what == "port = 70000" {
            tf.init();
        }
        let out = tf.run(&["plan", "-input=false", "-no-color"]);
        assert_ne!(out.code(), 0, "{what}: plan must fail");
        let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(expected),
            "{what}: expected {expected:?} in:\n{}",
            out.stderr
        );
    }
    // The coordinator's host, as Citus registers it and as the provider block names it.
    for (what, hcl, expected) in [
        (
            "a coordinator host that is SQL",
            format!("{head}\nresource \"citus_cluster\" \"c\" {{\n coordinator {{\n host = \"x'); select 1; --\"\n port = 1\n }}\n}}\n"),
            "coordinator.host must be a host name",
        ),
        (
            "a provider host that is SQL",
            format!("{head}\nprovider \"citus\" {{\n host = \"x'); select 1; --\"\n}}\nresource \"citus_cluster\" \"c\" {{\n coordinator {{\n host = \"127.0.0.1\"\n port = 1\n }}\n}}\n"),
            "host must be a host name",
        ),
    ] {
        tf.write_config(&hcl);
        let out = tf.run(&["plan", "-input=false", "-no-color"]);
        assert_ne!(out.code(), 0, "{what}: plan must fail");
        let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(expected), "{what}: expected {expected:?} in:\n{}", out.stderr);
    }
    assert!(tf.resource_addresses().is_empty(), "a refused plan must leave no state");

    // An unreachable coordinator is reported at plan time, naming the attribute.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    tf.write_config(&format!(
        "{head}\nresource \"citus_cluster\" \"c\" {{\n coordinator {{\n host = \"127.0.0.1\"\n port = {closed_port}\n }}\n connection {{\n connect_timeout = 2\n }}\n}}\n"
    ));
    let out = tf.run(&["plan", "-input=false", "-no-color"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("Cannot connect to the coordinator"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("coordinator"), "{}", out.stderr);
}

#[test]
fn citus_cluster_read_replica_joins_its_workers_group() {
    if !require_citus("citus_cluster_read_replica_joins_its_workers_group") {
        return;
    }
    let cluster = CitusCluster::start(2);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let replica = PgInstance::standby_of(&w[0]);
    let tf = Workdir::new("citus_cluster_read_replica");
    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    let with_replica = config(coord, &two, "").replace(
        &format!("port = {}\n  }}\n  worker \"w2\"", w[0].port()),
        &format!(
            "port = {}\n    read_replica {{\n      host = \"127.0.0.1\"\n      port = {}\n    }}\n  }}\n  worker \"w2\"",
            w[0].port(),
            replica.port()
        ),
    );
    assert!(
        with_replica.contains("read_replica"),
        "test config lacks the replica:\n{with_replica}"
    );
    tf.write_config(&with_replica);
    tf.init();
    tf.apply_and_assert_idempotent();
    let secondary = coord.sql(&format!(
        "SELECT s.noderole::text, (s.groupid = p.groupid)::text FROM pg_dist_node s \
         JOIN pg_dist_node p ON p.nodeport = {} AND p.noderole = 'primary' WHERE s.nodeport = {}",
        w[0].port(),
        replica.port()
    ));
    assert_eq!(
        secondary,
        vec![vec![Some("secondary".into()), Some("true".into())]]
    );
    let values = tf.resource_values("citus_cluster.this");
    assert_eq!(
        values["worker"]["w1"]["read_replica"][0]["port"],
        serde_json::json!(replica.port())
    );

    // Dropping the replica from the configuration deregisters it.
    tf.write_config(&config(coord, &two, ""));
    tf.apply_and_assert_idempotent();
    let left = coord.sql(&format!(
        "SELECT count(*)::text FROM pg_dist_node WHERE nodeport = {}",
        replica.port()
    ));
    assert_eq!(left[0][0].as_deref(), Some("0"));
}

#[test]
fn citus_cluster_ctrl_c_during_rebalance_stops_waiting_and_leaves_the_job_running() {
    if !require_citus(
        "citus_cluster_ctrl_c_during_rebalance_stops_waiting_and_leaves_the_job_running",
    ) {
        return;
    }
    let cluster = CitusCluster::start(3);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_ctrl_c");
    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config_with_mode(coord, &two, "", "force_logical"));
    tf.init();
    tf.apply_and_assert_idempotent();
    create_events_table(coord, 5_000, 16);
    let before = table_fingerprint(coord);

    // A third worker: a logical rebalance of several shards, seconds per move.
    let three = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
    ];
    tf.write_config(&config_with_mode(coord, &three, "", "force_logical"));
    let mut apply = tf.spawn(&["apply", "-auto-approve"]);
    wait_until("a rebalance task to run", Duration::from_secs(120), || {
        let rows = coord.sql(
            "SELECT count(*)::text FROM pg_dist_background_task WHERE status::text = 'running'",
        );
        rows[0][0].as_deref() != Some("0")
    });
    // Ctrl-C reaches the whole foreground process group.
    let interrupted = std::time::Instant::now();
    unsafe {
        libc::killpg(apply.id() as i32, libc::SIGINT);
    }
    let status = apply.wait().expect("terraform exits");
    let waited = interrupted.elapsed();
    eprintln!("terraform exited {waited:?} after Ctrl-C with {status}");
    assert!(
        waited < Duration::from_secs(15),
        "Stop must end the provider's waiting promptly, took {waited:?}"
    );
    let active = coord.sql(
        "SELECT count(*)::text FROM pg_dist_background_job WHERE state::text IN ('scheduled', 'running')",
    );
    assert_eq!(
        active[0][0].as_deref(),
        Some("1"),
        "the server-side job must keep running after Ctrl-C"
    );

    // The next apply adopts the job and converges.
    tf.apply_and_assert_idempotent();
    assert!(placements_on(coord, w[2].port()) > 0);
    assert_eq!(table_fingerprint(coord), before);
}

#[test]
fn citus_cluster_deregister_on_destroy_refuses_while_workers_hold_shards() {
    if !require_citus("citus_cluster_deregister_on_destroy_refuses_while_workers_hold_shards") {
        return;
    }
    let cluster = CitusCluster::start(2);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_deregister");
    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config(coord, &two, "  deregister_on_destroy = true\n"));
    tf.init();
    tf.apply_and_assert_idempotent();
    create_events_table(coord, 1_000, 4);

    // Workers hold placements: destroy refuses, names the table, removes nothing.
    let refused = tf.run(&["destroy", "-auto-approve"]);
    assert!(
        !refused.success(),
        "destroy must refuse while workers hold shards"
    );
    assert!(refused.stderr.contains("events"), "{}", refused.stderr);
    assert_eq!(registered_worker_ports(coord).len(), 2);
    // Terraform 1.3+ plans destroys through the provider: the plan says what apply
    // would refuse (a warning: the same destroy might undistribute the tables first).
    let plan = tf.run(&["plan", "-destroy"]);
    assert!(plan.success(), "{plan}");
    let warned = format!("{}{}", plan.stdout, plan.stderr);
    if crate::harness::terraform_version() >= (1, 3) {
        assert!(warned.contains("Destroy will be refused: Workers still hold shard placements") && warned.contains("events"), "{plan}");
    } else {
        assert!(!warned.contains("Destroy will be refused"), "Terraform before 1.3 plans destroys without the provider:\n{plan}");
    }
    assert_eq!(registered_worker_ports(coord).len(), 2);

    // Without distributed data, destroy deregisters every worker.
    coord.sql("SELECT undistribute_table('events')");
    tf.destroy();
    assert!(
        registered_worker_ports(coord).is_empty(),
        "workers are still registered"
    );
    assert_eq!(
        coord.sql("SELECT count(*)::text FROM events")[0][0].as_deref(),
        Some("1000")
    );
}

#[test]
fn citus_cluster_rebalancing_can_be_switched_off() {
    if !require_citus("citus_cluster_rebalancing_can_be_switched_off") {
        return;
    }
    let cluster = CitusCluster::start(3);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_rebalance_off");
    let two = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
    ];
    tf.write_config(&config(coord, &two, ""));
    tf.init();
    tf.apply_and_assert_idempotent();
    create_events_table(coord, 1_000, 8);

    // With rebalancing off, a new worker joins empty and the pending moves are only reported.
    let three = [
        WorkerDecl {
            name: "w1",
            node: &w[0],
        },
        WorkerDecl {
            name: "w2",
            node: &w[1],
        },
        WorkerDecl {
            name: "w3",
            node: &w[2],
        },
    ];
    let off = config(coord, &three, "")
        .replace("  rebalance {\n", "  rebalance {\n    enabled = false\n");
    tf.write_config(&off);
    tf.apply_and_assert_idempotent();
    assert_eq!(
        placements_on(coord, w[2].port()),
        0,
        "no shard may move while rebalancing is off"
    );
    let pending = tf.resource_values("citus_cluster.this")["pending_rebalance_moves"]
        .as_i64()
        .unwrap();
    assert!(pending > 0, "the pending moves must be reported");

    // Switched back on: the plan shows the rebalance, and apply runs it.
    tf.write_config(&config(coord, &three, ""));
    tf.apply_and_assert_idempotent();
    assert!(placements_on(coord, w[2].port()) > 0);
}

/// The provider block left empty: libpq's `PGHOST`, `PGPORT`, `PGUSER` and
/// `PGPASSWORD` (as Terraform Cloud passes them, in the environment) reach a
/// coordinator that asks that user for a password; an explicit attribute
/// wins over its variable; `sslcert` without `sslkey` is refused at plan.
#[test]
fn citus_provider_takes_libpq_environment_variables() {
    if !require_citus("citus_provider_takes_libpq_environment_variables") {
        return;
    }
    const ROLE: &str = "env_admin";
    const PASSWORD: &str = "fr0m-the-Environment";
    let cluster = CitusCluster::start(1);
    let (coord, worker) = (&cluster.coordinator, &cluster.workers[0]);
    for node in [coord, worker] {
        node.sql(&format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE {ROLE} SUPERUSER LOGIN PASSWORD '{PASSWORD}'"));
    }
    // Only the coordinator asks for the password (Citus' own connections to the
    // worker are another matter: internode authentication).
    let hba = coord.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    coord.sql("SELECT pg_reload_conf()");

    let tf = Workdir::new("citus_libpq_environment");
    let with_provider = |provider: &str| {
        config(coord, &[WorkerDecl { name: "w1", node: worker }], "")
            .replacen(&format!("provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {}\n  username = \"postgres\"\n}}\n", coord.port()), provider, 1)
    };
    tf.write_config(&with_provider("provider \"citus\" {}\n"));
    assert!(std::fs::read_to_string(tf.path().join("main.tf")).unwrap().contains("provider \"citus\" {}"));
    tf.set_env("PGHOST", "127.0.0.1");
    tf.set_env("PGPORT", &coord.port().to_string());
    tf.set_env("PGUSER", ROLE);
    tf.init();
    // Without PGPASSWORD the coordinator refuses the user: the plan says so.
    let (code, refused) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{refused}");
    assert!(refused.stderr.contains("password"), "{refused}");
    tf.set_env("PGPASSWORD", PASSWORD);
    let applied = tf.apply_and_assert_idempotent();
    assert!(!format!("{applied}").contains(PASSWORD));
    assert_eq!(registered_worker_ports(coord), [worker.port().to_string()]);

    // An explicit attribute wins over its variable: a wrong PGPORT changes nothing.
    tf.write_config(&with_provider(&format!("provider \"citus\" {{\n  port = {}\n}}\n", coord.port())));
    tf.set_env("PGPORT", "1");
    tf.assert_plan_empty();
    // A resource's coordinator_connection wins over the provider block: it reaches the
    // provider (a block named `connection` would be kept by Terraform for provisioners).
    let own = |provider: &str| {
        with_provider(provider).replacen(
            "resource \"citus_cluster\" \"this\" {\n",
            &format!("resource \"citus_cluster\" \"this\" {{\n  coordinator_connection {{\n    port = {}\n  }}\n", coord.port()),
            1,
        )
    };
    tf.write_config(&own(&format!("provider \"citus\" {{\n  port = {}\n}}\n", coord.port())));
    tf.apply_and_assert_idempotent();
    let wrong_provider_port = own("provider \"citus\" {\n  port = 1\n}\n");
    tf.write_config(&wrong_provider_port);
    tf.assert_plan_empty();
    tf.write_config(&wrong_provider_port.replacen(&format!("    port = {}\n", coord.port()), "    port = 1\n    connect_timeout = 2\n", 1));
    let unreachable = tf.run(&["apply", "-auto-approve"]);
    assert!(!unreachable.success(), "the resource's port 1 was not used:\n{unreachable}");
    assert!(unreachable.stderr.contains("127.0.0.1:1"), "{unreachable}");
    tf.write_config(&wrong_provider_port);

    // A certificate without its key is refused at plan, at its path.
    tf.write_config(&with_provider(&format!("provider \"citus\" {{\n  port = {}\n  sslcert = \"/nonexistent/client.pem\"\n}}\n", coord.port())));
    let (code, refused) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{refused}");
    assert!(refused.stderr.contains("sslcert without sslkey"), "{refused}");
}

/// Workers made by a `dynamic "worker_node"` block from a map, as a module
/// does: removing the middle one drains and removes it alone; the others
/// keep their node ids, and the plans stay empty.
#[test]
fn citus_cluster_worker_nodes_from_a_dynamic_block_scale_in_by_name() {
    if !require_citus("citus_cluster_worker_nodes_from_a_dynamic_block_scale_in_by_name") {
        return;
    }
    let cluster = CitusCluster::start(3);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_worker_node");
    let write = |names: &[(&str, &PgInstance)]| {
        let entries: String = names
            .iter()
            .map(|(name, node)| format!("    \"{name}\" = {{ port = {} }}\n", node.port()))
            .collect();
        let mut hcl = required_providers_hcl(&["citus"]);
        hcl.push_str(&format!(
            r#"
provider "citus" {{
  host     = "127.0.0.1"
  port     = {coordinator}
  username = "postgres"
}}

variable "workers" {{
  type    = map(object({{ port = number }}))
  default = {{
{entries}  }}
}}

resource "citus_cluster" "this" {{
  coordinator {{
    host = "127.0.0.1"
    port = {coordinator}
  }}
  dynamic "worker_node" {{
    for_each = var.workers
    content {{
      name = worker_node.key
      host = "127.0.0.1"
      port = worker_node.value.port
    }}
  }}
  rebalance {{
    shard_transfer_mode = "block_writes"
  }}
}}

output "node_ids" {{
  value = {{ for n in citus_cluster.this.worker_node : n.name => n.node_id }}
}}
"#,
            coordinator = coord.port()
        ));
        tf.write_config(&hcl);
    };
    let node_ids = || -> serde_json::Value {
        let out = tf.expect_success(tf.run(&["output", "-json", "node_ids"]));
        serde_json::from_str(&out.stdout).unwrap()
    };

    write(&[("a", &w[0]), ("b", &w[1]), ("c", &w[2])]);
    tf.init();
    tf.apply_and_assert_idempotent();
    assert_eq!(registered_worker_ports(coord).len(), 3);
    let before = node_ids();
    create_events_table(coord, 3_000, 12);
    let rows = table_fingerprint(coord);
    tf.assert_plan_empty();

    // "b" leaves from the middle of the list: drained, removed; "a" and "c"
    // are the same nodes as before.
    write(&[("a", &w[0]), ("c", &w[2])]);
    tf.apply_and_assert_idempotent();
    let after = node_ids();
    assert_eq!(after["a"], before["a"]);
    assert_eq!(after["c"], before["c"]);
    assert!(!registered_worker_ports(coord).contains(&w[1].port().to_string()), "b is still registered");
    assert_eq!(table_fingerprint(coord), rows);

    // Import reads workers as `worker` blocks; the next apply only moves
    // them to the configuration's form, with no membership change.
    tf.expect_success(tf.run(&["state", "rm", "citus_cluster.this"]));
    tf.expect_success(tf.run(&["import", "citus_cluster.this", &format!("127.0.0.1:{}", coord.port())]));
    tf.apply_and_assert_idempotent();
    assert_eq!(node_ids(), after);
    assert_eq!(table_fingerprint(coord), rows);

    // Two workers named alike are refused at plan time, with the path.
    write(&[("a", &w[0]), ("c", &w[2])]);
    let hcl = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    tf.write_config(&hcl.replace(
        "  rebalance {\n",
        "  worker \"a\" {\n    host = \"127.0.0.1\"\n    port = 1\n  }\n  rebalance {\n",
    ));
    let plan = tf.run(&["plan", "-input=false"]);
    let flat = format!("{}{}", plan.stdout, plan.stderr).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!plan.success() && flat.contains("Duplicate worker name"), "{plan}");
    assert!(flat.contains("worker_node[0].name"), "{plan}");
}
