//! Case 1, start-up: `terraform providers schema -json` with each provider,
//! beside Terraform with no provider at all. A provider's share is its
//! median minus Terraform's; ours is set beside HashiCorp's Go null provider.

use crate::common::{null_provider, providers, tf_secs};
use crate::harness::{required_providers_hcl, Workdir};
use crate::measure::{progress, record, stats, Row};

const TARGET_SHARE_VS_NULL: f64 = 0.5;
/// Start-ups are short and noisy: three times the rounds unless set.
const STARTUP_ROUNDS_VAR: &str = "SHARDFORM_BENCH_STARTUP_ROUNDS";

/// Seconds from exec to the go-plugin handshake line on stdout, the
/// executable alone (no Terraform; plain gRPC, no AutoMTLS).
fn handshake_secs(executable: &std::path::Path) -> f64 {
    use std::io::BufRead;
    let (secs, ()) = crate::measure::timed(|| {
        let mut child = std::process::Command::new(executable)
            .env("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2")
            .env("PLUGIN_PROTOCOL_VERSIONS", "5")
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the provider starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("1|5|"), "no handshake from {}: {line:?}", executable.display());
        let _ = child.kill();
        let _ = child.wait();
    });
    secs
}

pub fn run(rounds: usize) {
    let rounds = std::env::var(STARTUP_ROUNDS_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(rounds * 3).max(1);
    let mut subjects: Vec<(String, Workdir)> = Vec::new();
    let mut executables: Vec<(String, std::path::PathBuf)> =
        providers(&["citus", "pgpool", "longhorn"]).into_iter().map(|p| (format!("shardform/{}", p.type_name), p.executable)).collect();
    if let Some(null) = null_provider() {
        executables.push(("hashicorp null 2.1.2 (Go)".into(), null.executable));
    }
    let alone = Workdir::with_providers("bench-startup-none", Vec::new());
    alone.write_config("terraform {}\n");
    alone.init();
    subjects.push(("terraform alone".into(), alone));
    for name in ["citus", "pgpool", "longhorn"] {
        let tf = Workdir::with_providers(&format!("bench-startup-{name}"), providers(&[name]));
        tf.write_config(&required_providers_hcl(&[name]));
        tf.init();
        subjects.push((format!("shardform/{name}"), tf));
    }
    match null_provider() {
        Some(null) => {
            let tf = Workdir::with_providers("bench-startup-null", vec![null]);
            tf.write_config(&required_providers_hcl(&["null"]));
            tf.init();
            subjects.push(("hashicorp null 2.1.2 (Go)".into(), tf));
        }
        None => progress("the null provider is not at hand (SHARDFORM_NULL_PROVIDER): shares are set beside Terraform alone"),
    }
    // Warm the page cache once; then every round runs each subject once,
    // starting one later each round.
    for (_, tf) in &subjects {
        tf_secs(tf, &["providers", "schema", "-json"]);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    for round in 0..rounds {
        for k in 0..subjects.len() {
            let i = (k + round) % subjects.len();
            times[i].push(tf_secs(&subjects[i].1, &["providers", "schema", "-json"]));
        }
        if (round + 1) % 5 == 0 || round + 1 == rounds {
            progress(&format!("startup: round {}/{rounds} ({STARTUP_ROUNDS_VAR})", round + 1));
        }
    }
    let handshake: std::collections::BTreeMap<String, crate::measure::Stats> = executables
        .iter()
        .map(|(label, exe)| (label.clone(), stats(&(0..rounds).map(|_| handshake_secs(exe)).collect::<Vec<_>>())))
        .collect();
    let base = stats(&times[0]);
    let null_share = subjects
        .iter()
        .position(|(l, _)| l.starts_with("hashicorp null"))
        .map(|i| stats(&times[i]).median - base.median);
    for (i, (label, _)) in subjects.iter().enumerate().skip(1) {
        let s = stats(&times[i]);
        let share = s.median - base.median;
        let ours = label.starts_with("shardform/");
        let (ratio, ratio_label, target) = match (ours, null_share) {
            (true, Some(null)) if null > 0.0 => (Some(share / null), "provider share / null provider's share".to_string(), Some(TARGET_SHARE_VS_NULL)),
            (true, _) => (Some(s.median / base.median), "median / Terraform alone".to_string(), None),
            (false, _) => (Some(s.median / base.median), "median / Terraform alone".to_string(), None),
        };
        record(Row {
            case: format!("1 start-up: terraform providers schema -json, {label}"),
            subject: format!("with {label}"),
            subject_stats: s,
            baseline: "terraform alone (no provider)".into(),
            baseline_stats: Some(base),
            ratio,
            ratio_label,
            target,
            notes: vec![
                format!("provider's share (median - Terraform alone's): {:.1} ms", share * 1000.0),
                handshake.get(label).map(|h| format!("the executable alone, exec to handshake line: {h} s")).unwrap_or_default(),
            ],
        });
    }
}
