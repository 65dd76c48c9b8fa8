//! Case 3: `terraform plan` (with refresh) of the applied layout at 64, 1024
//! and 4096 shards, beside the SQL reads that plan needs run directly in one
//! psql session on the coordinator (the Citus floor); the provider's
//! statements per plan, and the providers' peak memory during it.

use crate::apply::tempdir;
use crate::common::{citus_workdir, statement_log, layout_config, peak_memory, psql_connect, psql_script, start_cluster, tf_secs, TerraformFloor};
use crate::harness::PgInstance;
use crate::measure::{alternate, record, stats, Row};

const SHARD_COUNTS: &[u32] = &[64, 1024, 4096];
/// Another list of shard counts, say `4096` alone while looking into it.
const SHARDS_VAR: &str = "SHARDFORM_BENCH_SHARDS";

fn shard_counts() -> Vec<u32> {
    match std::env::var(SHARDS_VAR) {
        Ok(list) => list.split([',', ' ']).filter(|s| !s.is_empty()).map(|s| s.parse().expect("a shard count")).collect(),
        Err(_) => SHARD_COUNTS.to_vec(),
    }
}
const WORKERS: usize = 6;
/// The target holds at 4096 shards.
const TARGET_AT_4096: f64 = 1.2;

/// What a refresh and plan of the layout read, each once, as the provider
/// sends them (citus_cluster's read, then citus_distributed_table's).
fn floor_script(coordinator: &PgInstance) -> String {
    let mut s = psql_connect(coordinator);
    s.push_str(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus';
SELECT nodeid, groupid, nodename, nodeport, noderole::text = 'primary', isactive, shouldhaveshards FROM pg_catalog.pg_dist_node ORDER BY nodeid;
SELECT p.groupid, count(*)::bigint FROM pg_catalog.pg_dist_placement p JOIN pg_catalog.pg_dist_shard s USING (shardid) JOIN pg_catalog.pg_dist_partition t ON t.logicalrelid = s.logicalrelid WHERE t.partmethod <> 'n' GROUP BY p.groupid;
SELECT current_setting('shardform.node_names', true);
SELECT count(*)::bigint, coalesce(sum(shard_size), 0)::bigint FROM pg_catalog.get_rebalance_table_shards_plan(rebalance_strategy := NULL::text::name);
SELECT c.oid, p.partmethod::text = 'h', pg_catalog.column_to_column_name(p.logicalrelid, p.partkey), p.colocationid,
       (SELECT count(*) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = c.oid)::bigint,
       (SELECT coalesce(array_agg(q.logicalrelid::regclass::text ORDER BY 1), '{}') FROM pg_catalog.pg_dist_partition q WHERE q.colocationid = p.colocationid AND q.logicalrelid <> c.oid),
       (SELECT min(d.colocationid) FROM pg_catalog.pg_dist_colocation d JOIN pg_catalog.pg_dist_colocation own ON own.colocationid = p.colocationid
         WHERE d.shardcount = own.shardcount AND d.replicationfactor = own.replicationfactor AND d.distributioncolumntype = own.distributioncolumntype
           AND d.distributioncolumncollation = own.distributioncolumncollation) = p.colocationid
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = c.oid
 WHERE n.nspname = 'public' AND c.relname = 'nodestore_node' AND c.relkind IN ('r', 'p');
WITH sizes AS (SELECT shard_id, max(size) AS size FROM pg_catalog.citus_shard_sizes() GROUP BY shard_id)
SELECT n.nodename || ':' || n.nodeport, count(*)::bigint, CASE WHEN count(sizes.shard_id) = count(*) THEN coalesce(sum(sizes.size), 0) END::bigint
  FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid)
  JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary'
  LEFT JOIN sizes ON sizes.shard_id = s.shardid
 WHERE s.logicalrelid = 'public.nodestore_node'::regclass GROUP BY 1;
",
    );
    s
}

pub fn run(rounds: usize) {
    let floor = TerraformFloor::new();
    let tf_plan: Vec<f64> = (0..rounds.max(3)).map(|_| floor.plan_secs()).collect();
    let tf_plan = stats(&tf_plan);
    let mut plan_medians = Vec::new();
    let counts = shard_counts();
    for &shards in &counts {
        let cluster = start_cluster(WORKERS);
        let tf = citus_workdir(&format!("bench-plan-{shards}"));
        let workers: Vec<&PgInstance> = cluster.workers.iter().collect();
        tf.write_config(&layout_config(&cluster.coordinator, &workers, shards, "auto"));
        tf.init();
        tf.apply();
        let (code, out) = tf.plan_exit_code(true);
        assert_eq!(code, 0, "the applied layout at {shards} shards plans changes:\n{out}");
        let dir = tempdir("plan");
        let (plans, floors) = alternate(
            rounds,
            &format!("plan at {shards} shards"),
            |_| tf_secs(&tf, &["plan"]),
            |_| psql_script(dir.path(), "floor", &cluster.coordinator, &floor_script(&cluster.coordinator)),
        );
        let nodes: Vec<&PgInstance> = cluster.nodes().collect();
        let provider_sql = statement_log(&nodes, "shardform", || {
            tf_secs(&tf, &["plan"]);
        });
        let floor_sql = statement_log(&nodes, "psql", || {
            psql_script(dir.path(), "floor", &cluster.coordinator, &floor_script(&cluster.coordinator));
        });
        let memory = peak_memory(&tf, &["plan"]);
        let (p, f) = (stats(&plans), stats(&floors));
        plan_medians.push(p.median);
        let net = (p.median - tf_plan.median) / f.median;
        let memory_note = memory
            .iter()
            .map(|(name, kb)| format!("{name} {:.1} MiB", *kb as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ");
        let mut notes = vec![
            format!("Terraform's fixed cost, plan of {}: {tf_plan} s", floor.label),
            format!("raw ratio of medians (Terraform included): {:.2}x", p.median / f.median),
            format!(
                "statements per plan (refresh + plan-time checks): {} on the coordinator, {} on workers, {:.0} ms of server time; the floor: {} statements, {:.0} ms",
                provider_sql.coordinator, provider_sql.others, provider_sql.millis, floor_sql.coordinator, floor_sql.millis
            ),
            format!("the provider's slowest statements: {}", provider_sql.slowest_note(3)),
            format!("peak memory (VmHWM) during the plan: {memory_note}"),
        ];
        if shards == *counts.last().unwrap() && counts.len() > 1 {
            notes.push(format!(
                "plan at {shards} shards / plan at {} shards: {:.2}x",
                counts[0],
                p.median / plan_medians[0]
            ));
        }
        record(Row {
            case: format!("3 plan of the layout at {shards} shards (refresh on)"),
            subject: "terraform plan".into(),
            subject_stats: p,
            baseline: "the plan's SQL reads in one psql session".into(),
            baseline_stats: Some(f),
            ratio: Some(net),
            ratio_label: "(plan - Terraform fixed cost) / Citus floor".into(),
            target: (shards == 4096).then_some(TARGET_AT_4096),
            notes,
        });
    }
}
