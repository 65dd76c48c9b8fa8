//! `citus_distributed_table` through the real Terraform CLI against real Citus.

use std::path::Path;
use std::time::Duration;

use crate::harness::{
    require_citus, required_providers_hcl, start_instances, wait_until, CitusCluster, PgInstance,
    PgOptions, Workdir,
};

fn provider_block(coordinator: &PgInstance) -> String {
    format!(
        "provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {}\n  username = \"postgres\"\n}}\n",
        coordinator.port()
    )
}

/// The Sentry module from `examples/`, used as users would.
fn sentry_config(cluster: &CitusCluster, shard_count: i64) -> String {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sentry-nodestore");
    let workers: Vec<String> = cluster
        .workers
        .iter()
        .map(|w| format!("{{ host = \"127.0.0.1\", port = {} }}", w.port()))
        .collect();
    format!(
        "{}{}\nmodule \"nodestore\" {{\n  source = \"{}\"\n  coordinator = {{ host = \"127.0.0.1\", port = {} }}\n  \
         workers = [{}]\n  shard_count = {shard_count}\n  shard_transfer_mode = \"block_writes\"\n}}\n",
        required_providers_hcl(&["citus"]),
        provider_block(&cluster.coordinator),
        module.display(),
        cluster.coordinator.port(),
        workers.join(", ")
    )
}

fn one_value(node: &PgInstance, query: &str) -> String {
    node.sql(query)[0][0].clone().unwrap_or_default()
}

fn shard_count(coordinator: &PgInstance, table: &str) -> i64 {
    one_value(
        coordinator,
        &format!("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = '{table}'::regclass"),
    )
    .parse()
    .unwrap()
}

/// Other tables in the table's colocation group.
fn colocated_tables(coordinator: &PgInstance, table: &str) -> i64 {
    one_value(
        coordinator,
        &format!(
            "SELECT count(*) FROM pg_dist_partition p JOIN pg_dist_partition me ON me.logicalrelid = '{table}'::regclass \
             WHERE p.colocationid = me.colocationid AND p.logicalrelid <> me.logicalrelid"
        ),
    )
    .parse()
    .unwrap()
}

fn nodestore_fingerprint(coordinator: &PgInstance) -> String {
    one_value(
        coordinator,
        "SELECT count(*) || ':' || md5(string_agg(id || data || timestamp::text, ',' ORDER BY id)) FROM nodestore_node",
    )
}

const NODESTORE: &str = "module.nodestore.citus_distributed_table.nodestore_node";

#[test]
fn citus_distributed_table_sentry_layout_end_to_end() {
    if !require_citus("citus_distributed_table_sentry_layout_end_to_end") {
        return;
    }
    let cluster = CitusCluster::start(6);
    let coord = &cluster.coordinator;
    let tf = Workdir::new("citus_distributed_table_sentry");

    // terraform apply alone: the table is created, distributed and balanced.
    tf.write_config(&sentry_config(&cluster, 64));
    tf.init();
    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "nodestore_node"), 64);
    assert_eq!(
        colocated_tables(coord, "nodestore_node"),
        0,
        "nodestore_node must be colocated with no other table"
    );
    let workers_with_shards = one_value(
        coord,
        "SELECT count(DISTINCT p.groupid) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) \
         WHERE s.logicalrelid = 'nodestore_node'::regclass",
    );
    assert_eq!(workers_with_shards, "6");
    assert_eq!(
        one_value(
            coord,
            "SELECT count(*) FROM get_rebalance_table_shards_plan()"
        ),
        "0"
    );

    coord.sql(
        "INSERT INTO nodestore_node SELECT md5(g::text), repeat(md5(g::text), 4), now() - g * interval '1 minute' \
         FROM generate_series(1, 20000) g",
    );
    let before = nodestore_fingerprint(coord);

    // 64 -> 32 shards: an in-place rewrite; rows and contents unchanged, still alone.
    tf.write_config(&sentry_config(&cluster, 32));
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(code, 2);
    assert!(
        plan.stdout.contains("update in-place") && !plan.stdout.contains("must be replaced"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr.contains("rewrites") || plan.stdout.contains("rewrites"),
        "the plan must warn of the rewrite:\n{}{}",
        plan.stdout,
        plan.stderr
    );
    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "nodestore_node"), 32);
    assert_eq!(colocated_tables(coord, "nodestore_node"), 0);
    assert_eq!(nodestore_fingerprint(coord), before);

    // Import by name reproduces the state.
    tf.import_and_compare(
        NODESTORE,
        "public.nodestore_node",
        &["create_if_missing", "timeouts"],
    );

    // Changes made by hand show up as plans, and apply puts them back.
    coord.sql("SELECT alter_distributed_table('nodestore_node', shard_count := 8, colocate_with := 'none')");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "a hand-made shard count change must show:\n{}",
        plan.stdout
    );
    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "nodestore_node"), 32);
    coord.sql("SELECT undistribute_table('nodestore_node')");
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 2,
        "an undistributed table must show:\n{}",
        plan.stdout
    );
    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "nodestore_node"), 32);
    assert_eq!(nodestore_fingerprint(coord), before);

    // Destroy by default leaves the table distributed with every row.
    tf.destroy();
    assert_eq!(shard_count(coord, "nodestore_node"), 32);
    assert_eq!(nodestore_fingerprint(coord), before);
}

fn table_config(coordinator: &PgInstance, body: &str) -> String {
    format!(
        "{}{}\nresource \"citus_distributed_table\" \"t\" {{\n{body}\n}}\n",
        required_providers_hcl(&["citus"]),
        provider_block(coordinator)
    )
}

/// A cluster whose workers are registered, with the extension everywhere.
fn registered_cluster(workers: usize) -> CitusCluster {
    let cluster = CitusCluster::start(workers);
    for node in cluster.nodes() {
        node.sql("CREATE EXTENSION citus");
    }
    let coord = &cluster.coordinator;
    coord.sql(&format!(
        "SELECT citus_set_coordinator_host('127.0.0.1', {})",
        coord.port()
    ));
    for w in &cluster.workers {
        coord.sql(&format!("SELECT citus_add_node('127.0.0.1', {})", w.port()));
    }
    cluster
}

#[test]
fn citus_distributed_table_undistribute_on_destroy_brings_rows_back() {
    if !require_citus("citus_distributed_table_undistribute_on_destroy_brings_rows_back") {
        return;
    }
    let cluster = registered_cluster(2);
    let coord = &cluster.coordinator;
    coord.sql("CREATE TABLE events (id bigint PRIMARY KEY, payload text)");
    coord.sql("INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 3000) g");
    let tf = Workdir::new("citus_distributed_table_undistribute");
    tf.write_config(&table_config(
        coord,
        "  table = \"events\"\n  distribution_column = \"id\"\n  shard_count = 8\n  undistribute_on_destroy = true",
    ));
    tf.init();
    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "events"), 8);
    // Distributing copied the rows into the shards; the local copy is left alone.
    assert_eq!(one_value(coord, "SELECT count(*) FROM events"), "3000");
    tf.destroy();
    assert_eq!(
        one_value(
            coord,
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass"
        ),
        "0"
    );
    assert_eq!(one_value(coord, "SELECT count(*) FROM events"), "3000");
}

#[test]
fn citus_distributed_table_bad_input_is_rejected_with_paths() {
    // Range checks need no database.
    let tf = Workdir::new("citus_distributed_table_bad_ranges");
    for (count, _) in [(0, "0"), (70000, "70000")] {
        let head = required_providers_hcl(&["citus"]);
        tf.write_config(&format!(
            "{head}resource \"citus_distributed_table\" \"t\" {{\n  table = \"t\"\n  distribution_column = \"id\"\n  shard_count = {count}\n}}\n"
        ));
        if count == 0 {
            tf.init();
        }
        let out = tf.run(&["plan", "-input=false"]);
        assert!(!out.success());
        assert!(
            out.stderr
                .contains("shard_count must be a whole number between 1 and 64000"),
            "{}",
            out.stderr
        );
    }

    if !require_citus("citus_distributed_table_bad_input_is_rejected_with_paths") {
        return;
    }
    let cluster = registered_cluster(1);
    let coord = &cluster.coordinator;
    coord.sql("CREATE TABLE events (id bigint PRIMARY KEY, payload text)");
    coord.sql("CREATE TABLE things (id text PRIMARY KEY)");
    coord.sql("SELECT create_distributed_table('things', 'id')");
    let tables_before = one_value(coord, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace");
    let tf = Workdir::new("citus_distributed_table_bad_input");
    let cases = [
        ("missing column", "  table = \"events\"\n  distribution_column = \"nope\"", "Column not found"),
        ("missing table", "  table = \"public.nope\"\n  distribution_column = \"id\"", "Table not found"),
        (
            "colocation with another column type",
            "  table = \"events\"\n  distribution_column = \"id\"\n  colocate_with = \"things\"",
            "need the same distribution column type",
        ),
        (
            "a name that looks like SQL",
            "  table = \"public.\\\"events; DROP TABLE things; --\\\"\"\n  distribution_column = \"id\"",
            "Table not found",
        ),
        ("shard_count with a colocation table", "  table = \"events\"\n  distribution_column = \"id\"\n  shard_count = 4\n  colocate_with = \"things\"", "shard_count conflicts with colocate_with"),
    ];
    let create = |dist: &str, extra: &str, shape: &str| {
        format!("  table = \"public.fresh\"\n  distribution_column = \"{dist}\"\n{extra}  create_if_missing {{\n{shape}\n  }}")
    };
    let col = |name: &str, ty: &str| format!("    column {{\n      name = \"{name}\"\n      type = \"{ty}\"\n    }}\n");
    let id_data = format!("{}{}", col("id", "bigint"), col("data", "text"));
    let create_cases: Vec<(&str, String, &str)> = vec![
        (
            "primary key naming a column not in the block",
            create("id", "", &format!("{id_data}    primary_key = [\"id\", \"nope\"]")),
            "create_if_missing.primary_key[1]: the primary key names \"nope\", which is no column",
        ),
        (
            "primary key without the distribution column",
            create("id", "", &format!("{id_data}    primary_key = [\"data\"]")),
            "create_if_missing.primary_key (\"data\") must include the distribution column \"id\"",
        ),
        (
            "two columns with one name",
            create("id", "", &format!("{id_data}{}", col("id", "text"))),
            "create_if_missing.column[2].name: the column \"id\" is declared twice",
        ),
        (
            "an index over a missing column",
            create("id", "", &format!("{id_data}    indexes = [[\"data\"], [\"ts\"]]")),
            "create_if_missing.indexes[1][0]: the index names \"ts\", which is no column",
        ),
        (
            "an index without columns",
            create("id", "", &format!("{id_data}    indexes = [[]]")),
            "create_if_missing.indexes[0] lists no column",
        ),
        (
            "a column listed twice in the primary key",
            create("id", "", &format!("{id_data}    primary_key = [\"id\", \"id\"]")),
            "create_if_missing.primary_key[1]: \"id\" appears twice in the primary key",
        ),
        (
            "a distribution column the new table lacks",
            create("ident", "", &id_data),
            "distribution_column: distribution_column names \"ident\", which is no column",
        ),
        (
            "colocate_with a table that does not exist",
            create("id", "  colocate_with = \"public.ghost\"\n", &id_data),
            "colocate_with: public.ghost does not exist or is not a hash-distributed table",
        ),
        (
            "colocate_with a table of another column type",
            create("id", "  colocate_with = \"things\"\n", &id_data),
            "need the same distribution column type",
        ),
        (
            "a column type the server does not know",
            create("id", "", &format!("{}{}", col("id", "bigint"), col("data", "textt"))),
            "create_if_missing.column[1].type: the coordinator knows no type \"textt\"",
        ),
        (
            "a column type that is SQL",
            create("id", "", &format!("{}{}", col("id", "bigint"), col("data", "text); drop table things; --"))),
            "Invalid column type",
        ),
        (
            "a column name with capitals and spaces",
            create("id", "", &format!("{}{}", col("id", "bigint"), col("My Data", "text"))),
            "Invalid name",
        ),
        (
            "a table name of three parts",
            "  table = \"a.b.c\"\n  distribution_column = \"id\"".to_string(),
            "Invalid table name",
        ),
        (
            "a colocation table name of three parts",
            "  table = \"events\"\n  distribution_column = \"id\"\n  colocate_with = \"a.b.c\"".to_string(),
            "Invalid table name",
        ),
        (
            "an empty distribution column",
            "  table = \"events\"\n  distribution_column = \" \"".to_string(),
            "distribution_column must not be empty",
        ),
        (
            "a bad timeout",
            "  table = \"events\"\n  distribution_column = \"id\"\n  timeouts {\n    create = \"soon\"\n  }".to_string(),
            "timeouts.create must be a duration",
        ),
    ];
    let cases: Vec<(&str, String, &str)> = cases
        .into_iter()
        .map(|(what, body, expected)| (what, body.to_string(), expected))
        .chain(create_cases)
        .collect();
    tf.write_config(&table_config(coord, &cases[0].1));
    tf.init();
    for (what, body, expected) in &cases {
        tf.write_config(&table_config(coord, body));
        let out = tf.run(&["plan", "-input=false"]);
        assert!(!out.success(), "{what}: plan must fail");
        // Terraform wraps long lines: compare with whitespace collapsed.
        let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(expected),
            "{what}: expected {expected:?} in:\n{}",
            out.stderr
        );
    }
    // Nothing changed in the database.
    assert_eq!(
        one_value(
            coord,
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass"
        ),
        "0"
    );
    let tables_after = one_value(coord, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace");
    assert_eq!(tables_before, tables_after);

    // The colocation target is checked before the table is created at apply
    // too (apply plans again first, and converge checks before CREATE TABLE).
    let (_, ghost, expected) = cases
        .iter()
        .find(|(what, _, _)| *what == "colocate_with a table that does not exist")
        .unwrap();
    tf.write_config(&table_config(coord, ghost));
    let out = tf.run(&["apply", "-auto-approve", "-input=false"]);
    let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!out.success() && flat.contains(expected), "{}", out.stderr);
    assert_eq!(
        one_value(coord, "SELECT count(*) FROM pg_class WHERE relname = 'fresh'"),
        "0",
        "a refused create_if_missing must not leave the table behind"
    );
    assert_eq!(
        tf.resource_addresses(),
        Vec::<String>::new(),
        "nothing may be in the state after refused plans"
    );
    assert!(cases.len() >= 21, "{} cases", cases.len());
}

#[test]
fn citus_distributed_table_refresh_sends_the_same_statements_for_64_and_4096_shards() {
    if !require_citus(
        "citus_distributed_table_refresh_sends_the_same_statements_for_64_and_4096_shards",
    ) {
        return;
    }
    let logged = PgOptions::citus()
        .setting("log_statement", "all")
        .setting("log_line_prefix", "%a|");
    let mut nodes = start_instances(3, &logged);
    let coord = nodes.remove(0);
    for node in std::iter::once(&coord).chain(&nodes) {
        node.sql("CREATE EXTENSION citus");
    }
    coord.sql(&format!(
        "SELECT citus_set_coordinator_host('127.0.0.1', {})",
        coord.port()
    ));
    for w in &nodes {
        coord.sql(&format!("SELECT citus_add_node('127.0.0.1', {})", w.port()));
    }
    let mut counts = Vec::new();
    for shards in [64, 4096] {
        let table = format!("t{shards}");
        coord.sql(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"));
        let tf = Workdir::new(&format!("citus_distributed_table_refresh_{shards}"));
        tf.write_config(&table_config(
            &coord,
            &format!(
                "  table = \"{table}\"\n  distribution_column = \"id\"\n  shard_count = {shards}"
            ),
        ));
        tf.init();
        tf.apply();
        let log_before = std::fs::metadata(coord.log_path()).unwrap().len() as usize;
        let refresh = tf.run(&["plan", "-refresh-only", "-input=false"]);
        assert!(refresh.success(), "{refresh}");
        let log = std::fs::read(coord.log_path()).unwrap();
        let statements = String::from_utf8_lossy(&log[log_before..])
            .lines()
            .filter(|l| {
                l.starts_with("shardform|") && (l.contains("statement: ") || l.contains("execute "))
            })
            .count();
        eprintln!("refresh of {shards} shards: {statements} statements from the provider");
        counts.push(statements);
    }
    assert!(counts[0] > 0, "no provider statements were logged");
    assert_eq!(
        counts[0], counts[1],
        "a refresh must cost the same whatever the shard count"
    );
}

#[test]
fn citus_distributed_table_killed_during_shard_count_change_converges() {
    if !require_citus("citus_distributed_table_killed_during_shard_count_change_converges") {
        return;
    }
    let cluster = registered_cluster(2);
    let coord = &cluster.coordinator;
    coord.sql("CREATE TABLE events (id bigint PRIMARY KEY, payload text)");
    let tf = Workdir::new("citus_distributed_table_killed");
    let body = |n: i64| {
        format!("  table = \"events\"\n  distribution_column = \"id\"\n  shard_count = {n}\n  colocate_with = \"none\"")
    };
    tf.write_config(&table_config(coord, &body(64)));
    tf.init();
    tf.apply_and_assert_idempotent();
    coord.sql(
        "INSERT INTO events SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g",
    );
    let before = one_value(
        coord,
        "SELECT count(*) || ':' || sum(length(payload)) FROM events",
    );

    tf.write_config(&table_config(coord, &body(32)));
    let mut apply = tf.spawn(&["apply", "-auto-approve"]);
    wait_until(
        "alter_distributed_table to run",
        Duration::from_secs(120),
        || {
            one_value(coord, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%alter_distributed_table%' AND application_name = 'shardform'") != "0"
        },
    );
    crate::harness::process::kill_process_group(&apply);
    let _ = apply.wait();

    tf.apply_and_assert_idempotent();
    assert_eq!(shard_count(coord, "events"), 32);
    assert_eq!(colocated_tables(coord, "events"), 0);
    assert_eq!(
        one_value(
            coord,
            "SELECT count(*) || ':' || sum(length(payload)) FROM events"
        ),
        before
    );
}

#[test]
fn citus_distributed_table_read_with_a_worker_down_reports_what_it_could_not_read() {
    if !require_citus(
        "citus_distributed_table_read_with_a_worker_down_reports_what_it_could_not_read",
    ) {
        return;
    }
    let cluster = registered_cluster(2);
    let coord = &cluster.coordinator;
    coord.sql("CREATE TABLE events (id bigint PRIMARY KEY, payload text)");
    let tf = Workdir::new("citus_distributed_table_worker_down");
    tf.write_config(&table_config(
        coord,
        "  table = \"events\"\n  distribution_column = \"id\"\n  shard_count = 8",
    ));
    tf.init();
    tf.apply_and_assert_idempotent();
    let sizes = tf.resource_values("citus_distributed_table.t")["placements"].clone();
    assert_eq!(
        sizes.as_object().map(|m| m.len()),
        Some(2),
        "placements on both workers: {sizes}"
    );

    cluster.workers[1].stop();
    let (code, plan) = tf.plan_exit_code(true);
    assert_eq!(
        code, 0,
        "a worker down must not fail or change the plan:\n{}{}",
        plan.stdout, plan.stderr
    );
    let output = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        output.contains("Shard sizes unavailable"),
        "the read must say what it could not read:\n{output}"
    );
    cluster.workers[1].start();
}

/// Sentry's nodestore shape, with the column types spelled `type_id` and `type_ts`.
fn nodestore_shape(type_id: &str, type_ts: &str) -> String {
    format!(
        "  table = \"public.nodestore_node\"\n  distribution_column = \"id\"\n  shard_count = 4\n  colocate_with = \"none\"\n  \
         create_if_missing {{\n    column {{\n      name = \"id\"\n      type = \"{type_id}\"\n      nullable = false\n    }}\n    \
         column {{\n      name = \"data\"\n      type = \"text\"\n      nullable = false\n    }}\n    \
         column {{\n      name = \"timestamp\"\n      type = \"{type_ts}\"\n      nullable = false\n    }}\n    \
         primary_key = [\"id\"]\n    indexes = [[\"timestamp\"]]\n  }}"
    )
}

#[test]
fn citus_distributed_table_import_with_create_if_missing_plans_nothing() {
    if !require_citus("citus_distributed_table_import_with_create_if_missing_plans_nothing") {
        return;
    }
    let cluster = registered_cluster(1);
    let coord = &cluster.coordinator;
    let canonical = table_config(coord, &nodestore_shape("character varying(40)", "timestamp with time zone"));
    let tf = Workdir::new("citus_distributed_table_import_cim");
    tf.write_config(&canonical);
    tf.init();
    tf.apply_and_assert_idempotent();
    let shards = || one_value(coord, "SELECT string_agg(shardid::text, ',' ORDER BY shardid) FROM pg_dist_shard WHERE logicalrelid = 'nodestore_node'::regclass");
    let before = shards();
    assert_eq!(before.split(',').count(), 4);

    // Import into a fresh directory with the same configuration: the next
    // plan is empty, with and without refresh.
    let fresh = Workdir::new("citus_distributed_table_import_cim_fresh");
    fresh.write_config(&canonical);
    fresh.init();
    fresh.expect_success(fresh.run(&["import", "citus_distributed_table.t", "public.nodestore_node"]));
    for refresh in [true, false] {
        let (code, plan) = fresh.plan_exit_code(refresh);
        assert_eq!(code, 0, "import must lead to an empty plan (refresh {refresh}):\n{}{}", plan.stdout, plan.stderr);
    }

    // Spelled otherwise, the block is an update that changes nothing live,
    // and the plan says so: every computed value stays known.
    let other = Workdir::new("citus_distributed_table_import_cim_other");
    other.write_config(&table_config(coord, &nodestore_shape("varchar(40)", "timestamptz")));
    other.init();
    other.expect_success(other.run(&["import", "citus_distributed_table.t", "public.nodestore_node"]));
    let (code, plan) = other.plan_exit_code(true);
    assert_eq!(code, 2, "{}", plan.stdout);
    assert!(
        plan.stdout.contains("update in-place") && !plan.stdout.contains("known after apply"),
        "an update of create_if_missing alone must keep computed values known:\n{}",
        plan.stdout
    );
    other.apply_and_assert_idempotent();
    assert_eq!(shards(), before, "the update must not touch the table");

    // So is a change of the time limits alone.
    let with_timeouts = nodestore_shape("varchar(40)", "timestamptz") + "\n  timeouts {\n    update = \"30m\"\n  }";
    other.write_config(&table_config(coord, &with_timeouts));
    let (code, plan) = other.plan_exit_code(true);
    assert_eq!(code, 2, "{}", plan.stdout);
    assert!(!plan.stdout.contains("known after apply"), "a timeouts change must keep computed values known:\n{}", plan.stdout);
    other.apply_and_assert_idempotent();
    assert_eq!(shards(), before);
}
