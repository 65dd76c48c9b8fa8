//! `citus_cluster` over nodes that require passwords: Citus' own connections
//! between nodes authenticate with the `internode_auth` passwords.

use crate::harness::{require_citus, required_providers_hcl, CitusCluster, PgInstance, Workdir};

/// Quotes, a backslash and a space: the authinfo quoting must keep them.
const PASSWORD: &str = r"s3cr'et\ pw";

/// `PASSWORD` as an HCL string literal.
fn hcl_password() -> String {
    format!("\"{}\"", PASSWORD.replace('\\', "\\\\"))
}

/// The authinfo Citus must find: libpq conninfo quoting.
fn expected_authinfo() -> String {
    format!("password='{}'", PASSWORD.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn config(coordinator: &PgInstance, workers: &[&PgInstance], auth: &str) -> String {
    let mut hcl = required_providers_hcl(&["citus"]);
    hcl.push_str(&format!(
        "provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {}\n  username = \"postgres\"\n  password = {}\n}}\n\n",
        coordinator.port(),
        hcl_password()
    ));
    hcl.push_str(&format!(
        "resource \"citus_cluster\" \"this\" {{\n  coordinator {{\n    host = \"127.0.0.1\"\n    port = {}\n  }}\n",
        coordinator.port()
    ));
    for (i, w) in workers.iter().enumerate() {
        hcl.push_str(&format!("  worker \"w{}\" {{\n    host = \"127.0.0.1\"\n    port = {}\n  }}\n", i + 1, w.port()));
    }
    hcl.push_str("  rebalance {\n    shard_transfer_mode = \"block_writes\"\n  }\n");
    hcl.push_str(auth);
    hcl.push_str("}\n");
    hcl
}

fn auth_block(attributes: &str) -> String {
    format!("  internode_auth \"postgres\" {{\n{attributes}  }}\n")
}

/// The node's `pg_dist_authinfo` rows as `nodeid:rolename:authinfo`.
fn authinfo_rows(node: &PgInstance) -> Vec<String> {
    node.sql("SELECT nodeid || ':' || rolename || ':' || authinfo FROM pg_dist_authinfo ORDER BY nodeid")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn rows_for_postgres() -> Vec<String> {
    let info = expected_authinfo();
    vec![format!("-1:postgres:{info}"), format!("0:postgres:{info}")]
}

fn placements_on(coordinator: &PgInstance, port: u16) -> i64 {
    let rows = coordinator.sql(&format!(
        "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n ON n.groupid = p.groupid \
         AND n.noderole = 'primary' WHERE n.nodeport = {port}"
    ));
    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
}

fn fingerprint(coordinator: &PgInstance) -> String {
    coordinator.sql("SELECT count(*) || ':' || md5(string_agg(id::text || payload, ',' ORDER BY id)) FROM secured")[0][0]
        .clone()
        .unwrap_or_default()
}

#[test]
fn citus_cluster_with_scram_on_every_node_is_built_and_scaled_out() {
    if !require_citus("citus_cluster_with_scram_on_every_node_is_built_and_scaled_out") {
        return;
    }
    let cluster = CitusCluster::start(3);
    for node in cluster.nodes() {
        node.require_password(PASSWORD);
    }
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_auth");
    let plain = auth_block(&format!("    password = {}\n", hcl_password()));

    // Two workers; Citus reaches them with the internode password.
    tf.write_config(&config(coord, &[&w[0], &w[1]], &plain));
    tf.init();
    let applied = tf.apply_and_assert_idempotent();
    assert!(!format!("{}{}", applied.stdout, applied.stderr).contains(PASSWORD), "the password is in terraform's output");
    for node in [coord, &w[0], &w[1]] {
        assert_eq!(authinfo_rows(node), rows_for_postgres(), "on port {}", node.port());
    }
    coord.sql(
        "CREATE TABLE secured (id bigint PRIMARY KEY, payload text NOT NULL); \
         SELECT create_distributed_table('secured', 'id', shard_count => 8); \
         INSERT INTO secured SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
    );
    let before = fingerprint(coord);

    // A third worker: its rows are written before citus_add_node, and the
    // rebalance copies shards worker to worker, each side authenticating.
    tf.write_config(&config(coord, &[&w[0], &w[1], &w[2]], &plain));
    tf.apply_and_assert_idempotent();
    assert_eq!(authinfo_rows(&w[2]), rows_for_postgres());
    assert!(placements_on(coord, w[2].port()) > 0, "the new worker got no shards");
    assert_eq!(fingerprint(coord), before);

    // Rows lost on a worker: without them Citus cannot connect from there;
    // the plan shows the repair, and apply makes it.
    w[1].sql("DELETE FROM pg_dist_authinfo");
    let from_w2 = w[1].sql_result(&format!(
        "SELECT result FROM run_command_on_workers('SELECT 1') WHERE nodeport = {}",
        w[0].port()
    ));
    // run_command_on_workers reports the failure as the result text.
    let refused = match &from_w2 {
        Ok(rows) => rows.iter().any(|r| r[0].as_deref().is_some_and(|t| t.contains("failed to connect") || t.contains("password"))),
        Err(e) => e.contains("password"),
    };
    assert!(refused, "w2 reached w1 without its internode password: {from_w2:?}");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2, "lost rows must show in the plan:\n{plan}");
    assert!(plan.stdout.contains("internode_auth"), "{plan}");
    assert!(!plan.stdout.contains(PASSWORD), "the plan shows the password:\n{plan}");
    tf.apply_and_assert_idempotent();
    assert_eq!(authinfo_rows(&w[1]), rows_for_postgres());

    // The write-only form keeps the password out of the state.
    if crate::harness::terraform_version() >= (1, 11) {
        let write_only = auth_block(&format!("    password_wo = {}\n    password_wo_version = 1\n", hcl_password()));
        tf.write_config(&config(coord, &[&w[0], &w[1], &w[2]], &write_only));
        tf.apply_and_assert_idempotent();
        let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
        assert!(!state.contains("s3cr"), "the write-only password is in the state");
        for node in cluster.nodes() {
            assert_eq!(authinfo_rows(node), rows_for_postgres(), "on port {}", node.port());
        }
    }

    // A second role's block, then without it: its rows go from every node,
    // the others stay.
    // Citus propagates the role from the coordinator to the workers.
    coord.sql("CREATE ROLE app LOGIN");
    let current = std::fs::read_to_string(tf.path().join("main.tf")).unwrap();
    let app = "  internode_auth \"app\" {\n    password = \"app-pw\"\n  }\n";
    tf.write_config(&current.replacen("  internode_auth \"postgres\"", &format!("{app}  internode_auth \"postgres\""), 1));
    tf.apply_and_assert_idempotent();
    for node in cluster.nodes() {
        let app_rows: Vec<String> = authinfo_rows(node).into_iter().filter(|r| r.contains(":app:")).collect();
        assert_eq!(app_rows, ["-1:app:password='app-pw'", "0:app:password='app-pw'"], "on port {}", node.port());
    }
    tf.write_config(&current);
    tf.apply_and_assert_idempotent();
    for node in cluster.nodes() {
        assert_eq!(authinfo_rows(node), rows_for_postgres(), "on port {}", node.port());
    }
    tf.destroy();
    assert_eq!(fingerprint(coord), before);
}

/// A role missing on a node is named, and the password never shows.
#[test]
fn citus_cluster_internode_auth_for_a_missing_role_is_refused_without_the_password() {
    if !require_citus("citus_cluster_internode_auth_for_a_missing_role_is_refused_without_the_password") {
        return;
    }
    let cluster = CitusCluster::start(1);
    let (coord, w) = (&cluster.coordinator, &cluster.workers);
    let tf = Workdir::new("citus_cluster_auth_role");
    let auth = format!("  internode_auth \"no_such_role\" {{\n    password = {}\n  }}\n", hcl_password());
    tf.write_config(&config(coord, &[&w[0]], &auth));
    tf.init();
    let failed = tf.apply_expect_error();
    let output = format!("{}{}", failed.stdout, failed.stderr);
    let flat = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("Cannot write the internode password"), "{output}");
    assert!(flat.contains("\"no_such_role\" does not exist"), "{output}");
    assert!(!output.contains("s3cr"), "the password reached the diagnostics:\n{output}");
    let log = std::fs::read_to_string(coord.log_path()).unwrap_or_default();
    assert!(!log.contains("s3cr"), "the password reached the server log");

    // Bad input at plan time: no password, or both forms.
    for (attributes, summary) in [
        (String::new(), "Missing password"),
        (format!("    password = {0}\n    password_wo = {0}\n", hcl_password()), "Conflicting passwords"),
    ] {
        tf.write_config(&config(coord, &[&w[0]], &auth_block(&attributes)));
        let plan = tf.run(&["plan", "-input=false"]);
        let flat = format!("{}{}", plan.stdout, plan.stderr).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(!plan.success() && flat.contains(summary), "{plan}");
        assert!(flat.contains("internode_auth[\"postgres\"]"), "the diagnostic names the path:\n{plan}");
    }
}
