//! Case 6: failover of a `pgpool_ha` group (a primary and two standbys,
//! synchronous replication, repmgrd, pgpool in front) under a steady write
//! load through pgpool: kill -9 of the primary's postmaster, and the longest
//! gap without an acknowledged write. The group's processes stop when the
//! case ends, pass or fail (the acceptance tests' `Group` guard).

use std::time::{Duration, Instant};

use crate::measure::{progress, record, stats, Row};
use crate::pgpool_ha::{sql, sql_ok, Group, WriteLoad};

const FAILOVER_ROUNDS_VAR: &str = "SHARDFORM_BENCH_FAILOVER_ROUNDS";
const NODES: [&str; 3] = ["node0", "node1", "node2"];

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_primary(port: u16) -> bool {
    sql(port, "SELECT pg_is_in_recovery()").is_ok_and(|r| r[0][0].as_deref() == Some("f"))
}

fn whole(endpoint: u16) -> bool {
    crate::pgpool_ha::try_pool_nodes(endpoint)
        .is_ok_and(|nodes| nodes.len() == NODES.len() && nodes.iter().all(|n| n.1 == "up" || n.1 == "waiting"))
}

pub fn run(rounds: usize) {
    let rounds = std::env::var(FAILOVER_ROUNDS_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(rounds.min(3)).max(1);
    let group = Group::new("bench-failover");
    group.write(2, "  synchronous_replication = true\n  deletion_protection = false\n");
    group.tf.init();
    group.tf.apply();
    let endpoint = group.endpoint();
    let ports: Vec<(&str, u16)> = NODES.iter().map(|n| (*n, group.node_port(n))).collect();
    sql_ok(endpoint, "CREATE TABLE w (id bigint PRIMARY KEY)");
    let (mut gaps, mut recoveries) = (Vec::new(), Vec::new());
    let mut acked_total = 0;
    for round in 0..rounds {
        wait_for("every node of the group attached in pgpool", Duration::from_secs(120), || whole(endpoint));
        let (name, _) = *ports.iter().find(|(_, p)| is_primary(*p)).expect("a primary");
        sql_ok(endpoint, "TRUNCATE w");
        let load = WriteLoad::start(endpoint);
        wait_for("some writes", Duration::from_secs(20), || load.acked() >= 50);
        let pid_file = group.base.join(name).join("data/postmaster.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().lines().next().unwrap().trim().parse().unwrap();
        let killed = Instant::now();
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let before = load.acked();
        wait_for("writes through pgpool after the failover", Duration::from_secs(120), || load.acked() >= before + 50);
        let recovered = killed.elapsed().as_secs_f64();
        let (acked, gap) = load.finish();
        acked_total += acked.len();
        let primary = ports.iter().find(|(_, p)| is_primary(*p)).expect("a new primary").1;
        let list = acked.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let present = sql_ok(primary, &format!("SELECT count(*) FROM w WHERE id = ANY('{{{list}}}'::bigint[])"));
        assert_eq!(present[0][0].as_deref(), Some(acked.len().to_string().as_str()), "acknowledged writes were lost");
        gaps.push(gap.as_secs_f64());
        recoveries.push(recovered);
        progress(&format!(
            "failover: round {}/{rounds}: {name} killed; longest gap {:.3}s, 50 writes again after {recovered:.3}s",
            round + 1,
            gap.as_secs_f64()
        ));
        // The event hook rejoins the old primary; apply repairs whatever it left.
        if !whole_within(endpoint, Duration::from_secs(60)) {
            group.tf.apply();
        }
    }
    record(Row {
        case: "6 failover of a pgpool_ha group under write load (kill -9 of the primary; 2 sync standbys)".into(),
        subject: "longest gap without an acknowledged write".into(),
        subject_stats: stats(&gaps),
        baseline: String::new(),
        baseline_stats: None,
        ratio: None,
        ratio_label: String::new(),
        target: None,
        notes: vec![
            format!("from kill -9 to 50 more acknowledged writes: {} s", stats(&recoveries)),
            format!("{acked_total} acknowledged writes, all present on the new primaries; pgpool health check every 1 s, repmgrd monitor every 1 s ({rounds} rounds, {FAILOVER_ROUNDS_VAR})"),
        ],
    });
    group.tf.destroy();
}

fn whole_within(endpoint: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if whole(endpoint) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
