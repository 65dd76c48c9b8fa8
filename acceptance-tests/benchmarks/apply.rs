//! Cases 2, 4 and 5: applies that change a cluster, beside the same work by
//! hand in one psql session. Every round gets fresh clusters (one for the
//! provider, one for the baseline), so both start from the same state.

use crate::common::{
    citus_workdir, insert_rows, layout_config, progress_rows, psql_connect, psql_script, start_cluster, statement_log, tf_secs,
    TerraformFloor,
};
use crate::harness::{CitusCluster, PgInstance, Workdir};
use crate::measure::{alternate, progress, record, stats, Row};

const SEED_WORKERS: usize = 6;
const SEED_SHARDS: u32 = 64;
const TARGET_SEED: f64 = 1.15;
const TARGET_SCALE_OUT: f64 = 1.1;
const TARGET_SCALE_IN: f64 = 1.1;
/// Rows in nodestore_node before a scale-out (`SHARDFORM_BENCH_ROWS`).
const ROWS_VAR: &str = "SHARDFORM_BENCH_ROWS";
/// Rounds of the slow `auto` (logical replication) scale-out.
const AUTO_ROUNDS_VAR: &str = "SHARDFORM_BENCH_AUTO_ROUNDS";

fn rows() -> u32 {
    std::env::var(ROWS_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn create_extension_script(node: &PgInstance) -> String {
    format!("{}CREATE EXTENSION IF NOT EXISTS citus;\n", psql_connect(node))
}

/// What the coordinator runs once every node has the extension.
fn seed_coordinator_script(cluster: &CitusCluster) -> String {
    let coord = &cluster.coordinator;
    let mut s = psql_connect(coord);
    s.push_str(&format!("SELECT citus_set_coordinator_host('127.0.0.1', {});\n", coord.port()));
    for w in &cluster.workers {
        s.push_str(&format!("SELECT citus_add_node('127.0.0.1', {});\n", w.port()));
    }
    // After membership changes the provider asks the rebalance plan and starts
    // a rebalance (nothing to move yet: no table).
    s.push_str("SELECT count(*), coalesce(sum(shard_size), 0) FROM get_rebalance_table_shards_plan();\n");
    s.push_str("SELECT citus_rebalance_start(shard_transfer_mode := 'auto');\n");
    s.push_str(
        "BEGIN;\nCREATE TABLE public.nodestore_node (id character varying(40) NOT NULL, data text NOT NULL, \
         \"timestamp\" timestamp with time zone NOT NULL, PRIMARY KEY (id));\n\
         CREATE INDEX nodestore_node_timestamp_idx ON public.nodestore_node (\"timestamp\");\nCOMMIT;\n",
    );
    s.push_str(&format!(
        "SELECT create_distributed_table('public.nodestore_node', 'id', colocate_with := 'none', shard_count := {SEED_SHARDS});\n"
    ));
    // The check of the result (citus_shards' sizes; the provider reads the same back).
    s.push_str(
        "WITH sizes AS (SELECT shard_id, max(size) AS size FROM pg_catalog.citus_shard_sizes() GROUP BY shard_id) \
         SELECT n.nodename, n.nodeport, count(*), sum(sizes.size) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) \
         JOIN pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' LEFT JOIN sizes ON sizes.shard_id = s.shardid \
         WHERE s.logicalrelid = 'public.nodestore_node'::regclass GROUP BY 1, 2;\n",
    );
    s
}

/// The whole seed in one psql session: the extension node after node.
fn seed_script(cluster: &CitusCluster) -> String {
    let mut s: String = cluster.workers.iter().map(create_extension_script).collect();
    s.push_str(&create_extension_script(&cluster.coordinator));
    s.push_str(&seed_coordinator_script(cluster));
    s
}

/// The same statements, the extension created on the seven nodes at once
/// (seven psql sessions), as the provider does, then the coordinator's part.
fn seed_concurrently(cluster: &CitusCluster) -> f64 {
    let dir = tempdir("seed-concurrent");
    let (secs, ()) = crate::measure::timed(|| {
        std::thread::scope(|scope| {
            for (i, node) in cluster.nodes().enumerate() {
                let dir = dir.path();
                scope.spawn(move || psql_script(dir, &format!("extension-{i}"), node, &create_extension_script(node)));
            }
        });
        psql_script(dir.path(), "seed", &cluster.coordinator, &seed_coordinator_script(cluster));
    });
    secs
}

/// Case 2: `terraform apply` of the seed layout (coordinator + 6 workers,
/// 64-shard nodestore_node) vs the psql script with the same statements, and
/// vs the same statements with the extension created concurrently.
pub fn seed(rounds: usize) {
    let floor = TerraformFloor::new();
    let mut floor_times = Vec::new();
    let mut concurrent = Vec::new();
    let (provider, script) = alternate(
        rounds,
        "seed",
        |_| {
            let cluster = start_cluster(SEED_WORKERS);
            let tf = citus_workdir("bench-seed");
            let workers: Vec<&PgInstance> = cluster.workers.iter().collect();
            tf.write_config(&layout_config(&cluster.coordinator, &workers, SEED_SHARDS, "auto"));
            tf.init();
            let secs = tf_secs(&tf, &["apply", "-auto-approve"]);
            check_seed(&cluster.coordinator);
            floor_times.push(floor.apply_secs());
            secs
        },
        |_| {
            let cluster = start_cluster(SEED_WORKERS);
            let dir = tempdir("seed");
            let secs = psql_script(dir.path(), "seed", &cluster.workers[0], &seed_script(&cluster));
            check_seed(&cluster.coordinator);
            drop(cluster);
            let cluster = start_cluster(SEED_WORKERS);
            concurrent.push(seed_concurrently(&cluster));
            check_seed(&cluster.coordinator);
            secs
        },
    );
    // One more of each, untimed, with every statement logged: counts and server time.
    let logged_provider = {
        let cluster = start_cluster(SEED_WORKERS);
        let tf = citus_workdir("bench-seed-logged");
        let workers: Vec<&PgInstance> = cluster.workers.iter().collect();
        tf.write_config(&layout_config(&cluster.coordinator, &workers, SEED_SHARDS, "auto"));
        tf.init();
        statement_log(&cluster.nodes().collect::<Vec<_>>(), "shardform", || {
            tf_secs(&tf, &["apply", "-auto-approve"]);
        })
    };
    let logged_script = {
        let cluster = start_cluster(SEED_WORKERS);
        let dir = tempdir("seed-logged");
        statement_log(&cluster.nodes().collect::<Vec<_>>(), "psql", || {
            psql_script(dir.path(), "seed", &cluster.workers[0], &seed_script(&cluster));
        })
    };
    let (p, b, f, c) = (stats(&provider), stats(&script), stats(&floor_times), stats(&concurrent));
    record(Row {
        case: "2 apply of the seed layout (coordinator + 6 workers, 64 shards)".into(),
        subject: "terraform apply".into(),
        subject_stats: p,
        baseline: "psql script, same statements, one session".into(),
        baseline_stats: Some(b),
        ratio: Some((p.median - f.median) / b.median),
        ratio_label: "(apply - Terraform fixed cost) / psql".into(),
        target: Some(TARGET_SEED),
        notes: vec![
            format!("Terraform's fixed cost, apply of {}: {f} s", floor.label),
            format!("raw ratio of medians (fixed cost included): {:.2}x", p.median / b.median),
            format!(
                "stricter baseline, the extension created on the 7 nodes concurrently as the provider does: {c} s; (apply - fixed cost) / it: {:.2}x, raw {:.2}x",
                (p.median - f.median) / c.median,
                p.median / c.median
            ),
            format!(
                "statements: provider {} on the coordinator + {} on workers, {:.0} ms of server time; psql script {} + {}, {:.0} ms",
                logged_provider.coordinator, logged_provider.others, logged_provider.millis,
                logged_script.coordinator, logged_script.others, logged_script.millis
            ),
            format!("the provider's slowest statements: {}", logged_provider.slowest_note(3)),
        ],
    });
}

fn check_seed(coordinator: &PgInstance) {
    let rows = coordinator.sql(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'public.nodestore_node'::regclass",
    );
    assert_eq!(rows[0][0].as_deref(), Some(SEED_SHARDS.to_string().as_str()), "the seed layout is not there");
}

pub fn tempdir(name: &str) -> crate::harness::tempdir::TempDir {
    crate::harness::tempdir::TempDir::new(&std::env::temp_dir(), &format!("shardform-bench-{name}")).unwrap()
}

/// A cluster of 7 workers with the seed layout on the first six and rows in
/// it, converged by the provider (untimed): the start of cases 4 and 5.
struct Seeded {
    cluster: CitusCluster,
    tf: Workdir,
}

impl Seeded {
    fn new(mode: &str) -> Seeded {
        let cluster = start_cluster(SEED_WORKERS + 1);
        let tf = citus_workdir("bench-scale");
        let six: Vec<&PgInstance> = cluster.workers[..SEED_WORKERS].iter().collect();
        tf.write_config(&layout_config(&cluster.coordinator, &six, SEED_SHARDS, mode));
        tf.init();
        tf.apply();
        insert_rows(&cluster.coordinator, rows());
        // Sizes changed: the provider may balance by disk size first.
        tf.apply();
        Seeded { cluster, tf }
    }

    fn seventh(&self) -> &PgInstance {
        &self.cluster.workers[SEED_WORKERS]
    }

    fn apply_workers(&self, count: usize, mode: &str) -> f64 {
        let workers: Vec<&PgInstance> = self.cluster.workers[..count].iter().collect();
        self.tf.write_config(&layout_config(&self.cluster.coordinator, &workers, SEED_SHARDS, mode));
        tf_secs(&self.tf, &["apply", "-auto-approve"])
    }

    fn by_hand(&self, name: &str, script: &str) -> f64 {
        let dir = tempdir(name);
        psql_script(dir.path(), name, &self.cluster.coordinator, &format!("{}{script}", psql_connect(&self.cluster.coordinator)))
    }

    fn scale_out_by_hand(&self, mode: &str) -> f64 {
        // A new node needs the extension first, as the provider creates it.
        self.by_hand(
            "scale-out",
            &format!(
                "{}CREATE EXTENSION IF NOT EXISTS citus;\n{}\
                 SELECT citus_add_node('127.0.0.1', {});\n\
                 SELECT citus_rebalance_start(shard_transfer_mode := '{mode}');\n\
                 SELECT citus_rebalance_wait();\n",
                psql_connect(self.seventh()),
                psql_connect(&self.cluster.coordinator),
                self.seventh().port()
            ),
        )
    }

    fn scale_in_by_hand(&self, mode: &str) -> f64 {
        let port = self.seventh().port();
        self.by_hand(
            "scale-in",
            &format!(
                "SELECT citus_set_node_property('127.0.0.1', {port}, 'shouldhaveshards', false);\n\
                 SELECT citus_rebalance_start(drain_only := true, shard_transfer_mode := '{mode}');\n\
                 SELECT citus_rebalance_wait();\n\
                 SELECT citus_remove_node('127.0.0.1', {port});\n"
            ),
        )
    }

    fn scalar(&self, query: &str) -> i64 {
        let rows = self.cluster.coordinator.sql(query);
        rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
    }

    fn last_job(&self) -> i64 {
        self.scalar("SELECT coalesce(max(job_id), 0) FROM pg_dist_background_job")
    }

    /// Rebalance jobs and shard moves since job `after`, and the moves the
    /// rebalancer would still make.
    fn moves_since(&self, after: i64) -> Moves {
        Moves {
            jobs: self.scalar(&format!("SELECT count(*) FROM pg_dist_background_job WHERE job_id > {after}")),
            moves: self.scalar(&format!("SELECT count(*) FROM pg_dist_background_task WHERE job_id > {after}")),
            pending: self.scalar("SELECT count(*) FROM get_rebalance_table_shards_plan()"),
        }
    }

    fn placements_on_seventh(&self) -> i64 {
        let port = self.seventh().port();
        let rows = self.cluster.coordinator.sql(&format!(
            "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n ON n.groupid = p.groupid \
             WHERE n.nodeport = {port} AND n.noderole = 'primary'"
        ));
        rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
    }
}

/// What a scale step made Citus do.
#[derive(Debug, Clone, Copy)]
struct Moves {
    jobs: i64,
    moves: i64,
    pending: i64,
}

fn moves_note(who: &str, moves: &[Moves]) -> String {
    let list: Vec<String> = moves.iter().map(|m| format!("{} moves in {} jobs, {} pending after", m.moves, m.jobs, m.pending)).collect();
    format!("{who}: {}", list.join("; "))
}

/// Cases 4 and 5: a 7th worker with a rebalance, then its removal by drain,
/// by `terraform apply` and by hand; block_writes for both, then auto
/// (logical replication) for the scale-out.
pub fn scale(rounds: usize) {
    let mode = "block_writes";
    let (mut out_p, mut out_h, mut in_p, mut in_h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut moved = Vec::new();
    let (mut moves_p, mut moves_h) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let provider = |out: &mut Vec<f64>, inn: &mut Vec<f64>, moved: &mut Vec<i64>, log: &mut Vec<[Moves; 2]>| {
            let s = Seeded::new(mode);
            let job = s.last_job();
            out.push(s.apply_workers(SEED_WORKERS + 1, mode));
            let after_out = s.moves_since(job);
            moved.push(s.placements_on_seventh());
            let job = s.last_job();
            inn.push(s.apply_workers(SEED_WORKERS, mode));
            log.push([after_out, s.moves_since(job)]);
            assert_eq!(s.placements_on_seventh(), 0);
        };
        let by_hand = |out: &mut Vec<f64>, inn: &mut Vec<f64>, log: &mut Vec<[Moves; 2]>| {
            let s = Seeded::new(mode);
            let job = s.last_job();
            out.push(s.scale_out_by_hand(mode));
            let after_out = s.moves_since(job);
            assert!(s.placements_on_seventh() > 0, "the rebalance by hand moved nothing");
            let job = s.last_job();
            inn.push(s.scale_in_by_hand(mode));
            log.push([after_out, s.moves_since(job)]);
        };
        if round % 2 == 0 {
            provider(&mut out_p, &mut in_p, &mut moved, &mut moves_p);
            by_hand(&mut out_h, &mut in_h, &mut moves_h);
        } else {
            by_hand(&mut out_h, &mut in_h, &mut moves_h);
            provider(&mut out_p, &mut in_p, &mut moved, &mut moves_p);
        }
        progress(&format!(
            "scale ({mode}): round {}/{rounds}: out {:.3}s vs {:.3}s by hand, in {:.3}s vs {:.3}s by hand",
            round + 1,
            out_p[round],
            out_h[round],
            in_p[round],
            in_h[round]
        ));
    }
    let floor = TerraformFloor::new();
    let fixed = stats(&(0..3).map(|_| floor.apply_secs()).collect::<Vec<_>>());
    let net = |p: &[f64], h: &[f64]| {
        format!(
            "net of Terraform's fixed cost ({}: {fixed} s): {:.2}x",
            floor.label,
            (stats(p).median - fixed.median) / stats(h).median
        )
    };
    let rows_note = progress_rows(rows(), &moved);
    record_pair("4 scale-out to a 7th worker + rebalance (block_writes)", &out_p, &out_h,
        "citus_add_node + citus_rebalance_start + citus_rebalance_wait", TARGET_SCALE_OUT,
        vec![net(&out_p, &out_h), rows_note.clone(),
             moves_note("provider", &moves_p.iter().map(|m| m[0]).collect::<Vec<_>>()),
             moves_note("by hand", &moves_h.iter().map(|m| m[0]).collect::<Vec<_>>())]);
    record_pair("5 scale-in of the 7th worker: drain, then remove (block_writes)", &in_p, &in_h,
        "set shouldhaveshards false + drain-only rebalance + wait + citus_remove_node", TARGET_SCALE_IN,
        vec![net(&in_p, &in_h), rows_note,
             moves_note("provider", &moves_p.iter().map(|m| m[1]).collect::<Vec<_>>()),
             moves_note("by hand", &moves_h.iter().map(|m| m[1]).collect::<Vec<_>>())]);

    if std::env::var_os("SHARDFORM_BENCH_SKIP_AUTO").is_some() {
        return;
    }
    let auto_rounds = std::env::var(AUTO_ROUNDS_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(rounds.min(3)).max(1);
    let (out_p, out_h) = alternate(
        auto_rounds,
        "scale-out (auto)",
        |_| {
            let s = Seeded::new("auto");
            s.apply_workers(SEED_WORKERS + 1, "auto")
        },
        |_| {
            let s = Seeded::new("auto");
            s.scale_out_by_hand("auto")
        },
    );
    record_pair(
        &format!("4 scale-out to a 7th worker + rebalance (auto: logical replication; {auto_rounds} rounds, {AUTO_ROUNDS_VAR})"),
        &out_p,
        &out_h,
        "citus_add_node + citus_rebalance_start + citus_rebalance_wait",
        TARGET_SCALE_OUT,
        vec![net(&out_p, &out_h)],
    );
}

fn record_pair(case: &str, subject: &[f64], baseline: &[f64], by_hand: &str, target: f64, notes: Vec<String>) {
    let (p, b) = (stats(subject), stats(baseline));
    record(Row {
        case: case.into(),
        subject: "terraform apply".into(),
        subject_stats: p,
        baseline: format!("by hand (psql): {by_hand}"),
        baseline_stats: Some(b),
        ratio: Some(p.median / b.median),
        ratio_label: "ratio of medians".into(),
        target: Some(target),
        notes,
    });
}
