//! Benchmarks: what the providers cost beside the work they drive, measured
//! side by side in the same run (tracker issue 12). Run them with
//! `bash acceptance-tests/benchmarks/run.sh`; see README.md beside this file.
//!
//! A `[[bench]]` target without libtest (`harness = false`): `cargo bench`
//! builds it and the provider executables with the release profile, and
//! `cargo test` never builds or runs it. It shares the acceptance harness
//! (PostgreSQL instances, Citus clusters, Terraform workdirs with a mirror).
//!
//! Arguments select cases by name (`startup seed plan scale failover`; none
//! means all). `SHARDFORM_BENCH_ROUNDS` sets the rounds per case (default 5).

// The harness' own unit tests come along (cargo builds benches with cfg(test)).
#[allow(unused_imports)]
#[path = "../harness/mod.rs"]
mod harness;
#[allow(dead_code, unused_imports)]
#[path = "../pgpool_ha.rs"]
mod pgpool_ha;

mod apply;
mod common;
mod failover;
mod measure;
mod plan;
mod startup;

use std::time::Instant;

const CASES: &[&str] = &["startup", "seed", "plan", "scale", "failover"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for a in &args {
        assert!(CASES.contains(&a.as_str()), "unknown case {a:?}; cases: {}", CASES.join(" "));
    }
    let wanted = |case: &str| args.is_empty() || args.iter().any(|a| a == case);
    let rounds = common::rounds();
    let started = Instant::now();
    println!("{}", common::machine_header(rounds));

    let citus = harness::citus_installed();
    for case in CASES.iter().copied().filter(|c| wanted(c)) {
        println!("== {case}");
        let needs_citus = matches!(case, "seed" | "plan" | "scale");
        if needs_citus && !citus {
            println!("SKIPPED {case}: Citus is not installed ({})", harness::postgres::citus_library().display());
            continue;
        }
        match case {
            "startup" => startup::run(rounds),
            "seed" => apply::seed(rounds),
            "plan" => plan::run(rounds),
            "scale" => apply::scale(rounds),
            "failover" => failover::run(rounds),
            _ => unreachable!(),
        }
    }
    println!("\n==== results ({} rounds; {:.0} s in all)", rounds, started.elapsed().as_secs_f64());
    println!("{}", common::machine_header(rounds));
    print!("{}", measure::all_rows());
}
