//! `longhorn_volume` through the real Terraform CLI against the Kubernetes
//! API stand-in (`acceptance-tests/kube-standin/`), checked through the API
//! with `kubectl` and the stand-in's request log, never through Terraform alone.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::kube::{Standin, StandinOptions};
use crate::harness::process::kill_process_group;
use crate::harness::{required_providers_hcl, wait_until, TfOutput, Workdir};

const GI: u64 = 1 << 30;

/// A provider block reading the stand-in's kubeconfig (token auth, its current context).
fn kubeconfig_provider(standin: &Standin) -> String {
    format!(
        "{}provider \"longhorn\" {{\n  config_path = \"{}\"\n}}\n",
        required_providers_hcl(&["longhorn"]),
        standin.kubeconfig().display()
    )
}

/// A provider block with host and a client certificate given directly.
fn cert_provider(standin: &Standin) -> String {
    let dir = standin.dir().display();
    format!(
        "{}provider \"longhorn\" {{\n  host = \"{}\"\n  client_certificate = file(\"{dir}/client.crt\")\n  \
         client_key = file(\"{dir}/client.key\")\n  cluster_ca_certificate = file(\"{dir}/ca.crt\")\n}}\n",
        required_providers_hcl(&["longhorn"]),
        standin.url
    )
}

fn volume_hcl(name: &str, extra: &str) -> String {
    format!("resource \"longhorn_volume\" \"v\" {{\n  name = \"{name}\"\n{extra}}}\n")
}

fn spec_size(volume: &Value) -> u64 {
    volume["spec"]["size"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Terraform wraps diagnostics and frames them with `│`: compare words only.
fn normalized(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_contains(output: &TfOutput, needles: &[&str]) {
    let text = normalized(&format!("{}\n{}", output.stdout, output.stderr));
    for needle in needles {
        assert!(
            text.contains(&normalized(needle)),
            "expected {needle:?} in:\n{output}"
        );
    }
}

/// Requests of `method` whose path contains `fragment`.
fn requests_to<'a>(log: &'a [Value], method: &str, fragment: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|r| r["method"].as_str() == Some(method))
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains(fragment)))
        .collect()
}

fn body(request: &Value) -> &Value {
    if request.get("body").is_some() {
        &request["body"]
    } else {
        &request["json"]
    }
}

fn plan_output(tf: &Workdir) -> (i32, TfOutput) {
    tf.plan_exit_code(true)
}

fn wait_gone(what: &str, mut gone: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(60), &mut gone);
}

#[test]
fn longhorn_volume_lifecycle_with_token_auth() {
    let standin = Standin::start("lifecycle");
    let tf = Workdir::new("longhorn_volume_lifecycle");
    let provider = kubeconfig_provider(&standin);
    let config = |extra: &str| format!("{provider}{}", volume_hcl("data-0", extra));

    // Create: only what the configuration sets is applied.
    tf.write_config(&config("  size = \"20Gi\"\n  number_of_replicas = 2\n"));
    tf.init();
    standin.clear_requests();
    tf.apply_and_assert_idempotent();
    let volume = standin.volume("data-0").expect("the Volume exists");
    assert_eq!(spec_size(&volume), 20 * GI);
    assert_eq!(volume["spec"]["numberOfReplicas"], json!(2));
    let log = standin.requests();
    let applies = requests_to(&log, "PATCH", "/volumes/data-0");
    assert!(
        !applies.is_empty(),
        "no server-side apply of the Volume in {log:#?}"
    );
    for apply in &applies {
        let spec: Vec<&String> = body(apply)["spec"]
            .as_object()
            .expect("a spec")
            .keys()
            .collect();
        assert_eq!(
            spec,
            ["numberOfReplicas", "size"],
            "the apply body holds more than the user set: {apply}"
        );
        assert_eq!(
            apply["query"]["fieldManager"],
            json!("shardform-longhorn"),
            "{apply}"
        );
        assert_eq!(
            apply["content_type"],
            json!("application/apply-patch+yaml"),
            "{apply}"
        );
    }
    eprintln!(
        "longhorn: create applied only {{size, numberOfReplicas}} ({} apply requests)",
        applies.len()
    );
    let state = tf.resource_values("longhorn_volume.v");
    assert_eq!(state["size_bytes"], json!(20 * GI));
    assert_eq!(state["state"], json!("detached"));
    assert_eq!(
        state["data_engine"],
        json!("v1"),
        "webhook defaults are read back"
    );

    // Import by name reproduces the state, and its plan is empty.
    tf.import_and_compare("longhorn_volume.v", "data-0", &["timeouts"]);
    let imported = Workdir::new("longhorn_volume_lifecycle_import_plan");
    imported.write_config(&config("  size = \"20Gi\"\n  number_of_replicas = 2\n"));
    imported.init();
    let import = imported.run(&["import", "longhorn_volume.v", "longhorn-system/data-0"]);
    assert!(import.success(), "{import}");
    imported.assert_plan_empty();

    // 20Gi -> 30Gi in place.
    tf.write_config(&config("  size = \"30Gi\"\n  number_of_replicas = 2\n"));
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 2, "{plan}");
    assert_contains(&plan, &["1 to change, 0 to destroy"]);
    tf.apply_and_assert_idempotent();
    assert_eq!(spec_size(&standin.volume("data-0").unwrap()), 30 * GI);

    // 30Gi -> 10Gi is refused at plan.
    tf.write_config(&config("  size = \"10Gi\"\n  number_of_replicas = 2\n"));
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 1, "{plan}");
    assert_contains(
        &plan,
        &[
            "Longhorn volumes cannot shrink",
            "size \"10Gi\"",
            "current 30Gi",
        ],
    );

    // Protection on: destroy is refused, the volume stays.
    tf.write_config(&config("  size = \"30Gi\"\n  number_of_replicas = 2\n"));
    let refused = tf.run(&["destroy", "-auto-approve"]);
    assert!(!refused.success(), "{refused}");
    assert_contains(&refused, &["Volume protected from deletion"]);
    assert!(
        standin.volume("data-0").is_some(),
        "a protected volume was deleted"
    );
    // Terraform 1.3+ plans destroys through the provider: refused already at plan.
    let plan = tf.run(&["plan", "-destroy"]);
    if crate::harness::terraform_version() >= (1, 3) {
        assert!(!plan.success(), "plan -destroy of a protected volume succeeded:\n{plan}");
        assert_contains(&plan, &["Volume protected from deletion"]);
    } else {
        assert!(plan.success(), "{plan}");
    }

    // Drift: another manager changes numberOfReplicas; the plan shows it, apply repairs it.
    standin.kubectl(&[
        "patch",
        "volumes.longhorn.io",
        "data-0",
        "-n",
        "longhorn-system",
        "--type=merge",
        "--field-manager=someone-else",
        "-p",
        r#"{"spec":{"numberOfReplicas":4}}"#,
    ]);
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 2, "drift not shown:\n{plan}");
    assert_contains(&plan, &["number_of_replicas", "4 -> 2"]);
    tf.apply_and_assert_idempotent();
    assert_eq!(
        standin.volume("data-0").unwrap()["spec"]["numberOfReplicas"],
        json!(2)
    );

    // A field the configuration leaves to Longhorn, changed by someone else, is theirs: no plan.
    standin.kubectl(&[
        "patch",
        "volumes.longhorn.io",
        "data-0",
        "-n",
        "longhorn-system",
        "--type=merge",
        "--field-manager=someone-else",
        "-p",
        r#"{"spec":{"staleReplicaTimeout":90}}"#,
    ]);
    tf.assert_plan_empty();
    let refresh = tf.run(&["refresh"]);
    assert!(refresh.success(), "{refresh}");
    assert_eq!(
        tf.resource_values("longhorn_volume.v")["stale_replica_timeout"],
        json!(90)
    );

    // Deleted behind Terraform's back: the plan creates it again.
    standin.kubectl(&[
        "delete",
        "volumes.longhorn.io",
        "data-0",
        "-n",
        "longhorn-system",
        "--wait=false",
    ]);
    wait_gone("the Volume deleted by kubectl", || {
        standin.volume("data-0").is_none()
    });
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 2, "{plan}");
    assert_contains(&plan, &["1 to add, 0 to change, 0 to destroy"]);
    tf.apply_and_assert_idempotent();
    assert_eq!(
        spec_size(&standin.volume("data-0").expect("recreated")),
        30 * GI
    );

    // An immutable field changed plans a replacement (refused while protected).
    tf.write_config(&config(
        "  size = \"30Gi\"\n  number_of_replicas = 2\n  encrypted = true\n",
    ));
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 1, "{plan}");
    assert_contains(&plan, &["Replacing a protected volume", "encrypted"]);
    tf.write_config(&config(
        "  size = \"30Gi\"\n  number_of_replicas = 2\n  deletion_protection = false\n",
    ));
    tf.apply_and_assert_idempotent();
    tf.write_config(&config("  size = \"30Gi\"\n  number_of_replicas = 2\n  deletion_protection = false\n  data_engine = \"v2\"\n"));
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 2, "{plan}");
    assert_contains(
        &plan,
        &[
            "must be replaced",
            "forces replacement",
            "1 to add, 0 to change, 1 to destroy",
        ],
    );

    // Destroy: gone through the API, after Longhorn's finalizer.
    let finalizers = standin.volume("data-0").unwrap()["metadata"]["finalizers"].clone();
    assert_eq!(
        finalizers,
        json!(["longhorn.io"]),
        "Longhorn's finalizer is not on the Volume"
    );
    tf.write_config(&config(
        "  size = \"30Gi\"\n  number_of_replicas = 2\n  deletion_protection = false\n",
    ));
    tf.destroy();
    assert!(
        standin.volume("data-0").is_none(),
        "the Volume is still there after destroy"
    );
}

#[test]
fn longhorn_volume_pv_pvc_with_client_certificate() {
    let standin = Standin::start("pvpvc");
    let tf = Workdir::new("longhorn_volume_pvpvc");
    let config = |size: &str| {
        format!(
            "{}{}",
            cert_provider(&standin),
            volume_hcl(
                "data-1",
                &format!(
                    "  size = \"{size}\"\n  deletion_protection = false\n  kubernetes_pv {{}}\n  \
                     kubernetes_pvc {{\n    name = \"data-citus-1\"\n    namespace = \"default\"\n  }}\n"
                )
            )
        )
    };
    tf.write_config(&config("20Gi"));
    tf.init();
    tf.apply_and_assert_idempotent();
    let pv = standin.pv("data-1").expect("the PV exists");
    assert_eq!(pv["spec"]["csi"]["driver"], json!("driver.longhorn.io"));
    assert_eq!(pv["spec"]["csi"]["volumeHandle"], json!("data-1"));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], json!("Retain"));
    let pvc = standin
        .pvc("default", "data-citus-1")
        .expect("the PVC exists");
    assert_eq!(pvc["status"]["phase"], json!("Bound"));
    assert_eq!(pvc["spec"]["volumeName"], json!("data-1"));
    let state = tf.resource_values("longhorn_volume.v");
    assert_eq!(
        state["kubernetes_status"]["pvc_name"],
        json!("data-citus-1"),
        "{state}"
    );
    let pv_block = if state["kubernetes_pv"].is_array() {
        &state["kubernetes_pv"][0]
    } else {
        &state["kubernetes_pv"]
    };
    assert_eq!(pv_block["name"], json!("data-1"), "{state}");

    // Import reads back the PV and PVC this provider made.
    tf.import_and_compare(
        "longhorn_volume.v",
        "longhorn-system/data-1",
        &["timeouts", "deletion_protection"],
    );

    // Growth with a bound PVC goes through the PVC.
    tf.write_config(&config("30Gi"));
    standin.clear_requests();
    tf.apply_and_assert_idempotent();
    let log = standin.requests();
    let pvc_patches = requests_to(&log, "PATCH", "/persistentvolumeclaims/data-citus-1");
    assert!(
        pvc_patches
            .iter()
            .any(
                |r| body(r)["spec"]["resources"]["requests"]["storage"] == json!("30Gi")
                    && r["query"]["fieldManager"] == json!("shardform-longhorn")
            ),
        "the PVC was not grown by the provider: {log:#?}"
    );
    let volume_writes: Vec<_> = log
        .iter()
        .filter(|r| matches!(r["method"].as_str(), Some("PATCH" | "PUT")))
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.contains("/volumes/data-1"))
        })
        .collect();
    assert!(
        volume_writes.is_empty(),
        "the provider wrote the Volume directly: {volume_writes:#?}"
    );
    assert_eq!(spec_size(&standin.volume("data-1").unwrap()), 30 * GI);
    eprintln!(
        "longhorn: growth went through the PVC ({} PVC patches, no Volume write)",
        pvc_patches.len()
    );

    // The PV and PVC blocks removed: both deleted, the volume stays; back again: remade and bound.
    let plain = format!(
        "{}{}",
        cert_provider(&standin),
        volume_hcl(
            "data-1",
            "  size = \"30Gi\"\n  deletion_protection = false\n"
        )
    );
    tf.write_config(&plain);
    tf.apply_and_assert_idempotent();
    assert!(standin.pv("data-1").is_none() && standin.pvc("default", "data-citus-1").is_none());
    assert!(standin.volume("data-1").is_some());
    tf.write_config(&config("30Gi"));
    tf.apply_and_assert_idempotent();
    assert_eq!(
        standin
            .pvc("default", "data-citus-1")
            .expect("the PVC again")["status"]["phase"],
        json!("Bound")
    );

    tf.destroy();
    assert!(
        standin.volume("data-1").is_none(),
        "Volume left after destroy"
    );
    assert!(standin.pv("data-1").is_none(), "PV left after destroy");
    assert!(
        standin.pvc("default", "data-citus-1").is_none(),
        "PVC left after destroy"
    );
}

#[test]
fn longhorn_volume_bad_input_is_refused_at_plan() {
    let standin = Standin::start("badinput");
    let tf = Workdir::new("longhorn_volume_bad_input");
    let cases = [
        ("long", format!("  name = \"{}\"\n  size = \"1Gi\"\n", "a".repeat(41)), "at most 40"),
        ("caps", "  name = \"Data\"\n  size = \"1Gi\"\n".to_string(), "must match ^[a-z0-9][a-z0-9_.-]+$"),
        ("small", "  name = \"small\"\n  size = \"8Mi\"\n".to_string(), "size is \"8Mi\", but Longhorn volumes are at least 10Mi"),
        ("nounit", "  name = \"nounit\"\n  size = \"20\"\n".to_string(), "size: \"20\" has no unit"),
        ("enum", "  name = \"enum\"\n  size = \"1Gi\"\n  data_locality = \"nearby\"\n".to_string(), "data_locality must be one of"),
        ("zero", "  name = \"zero\"\n  size = \"1Gi\"\n  number_of_replicas = 0\n".to_string(), "number_of_replicas must be a whole number between 1 and 20, got 0"),
        ("many", "  name = \"many\"\n  size = \"1Gi\"\n  number_of_replicas = 21\n".to_string(), "between 1 and 20, got 21"),
        (
            "strict",
            "  name = \"strict\"\n  size = \"1Gi\"\n  data_locality = \"strict-local\"\n  number_of_replicas = 2\n".to_string(),
            "number_of_replicas is 2, but data_locality = \"strict-local\" allows exactly 1",
        ),
    ];
    let mut hcl = kubeconfig_provider(&standin);
    for (label, body, _) in &cases {
        hcl.push_str(&format!(
            "resource \"longhorn_volume\" \"{label}\" {{\n{body}}}\n"
        ));
    }
    tf.write_config(&hcl);
    tf.init();
    standin.clear_requests();
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 1, "{plan}");
    for (label, _, message) in &cases {
        let text = normalized(&format!("{}{}", plan.stdout, plan.stderr));
        assert!(
            text.contains(&normalized(message)),
            "case {label}: {message:?} not in:\n{plan}"
        );
        assert!(
            text.contains(&format!("resource \"longhorn_volume\" \"{label}\"")),
            "case {label}: the diagnostic does not point at its resource:\n{plan}"
        );
    }
    let writes: Vec<Value> = standin
        .requests()
        .into_iter()
        .filter(|r| !matches!(r["method"].as_str(), Some("GET")))
        .filter(|r| !r["path"].as_str().unwrap_or("").starts_with("/_standin"))
        .collect();
    assert!(writes.is_empty(), "bad input reached the API: {writes:#?}");
}

/// The spawned apply number `n` was killed before it finished.
fn assert_killed_mid_apply(tf: &Workdir, n: usize) {
    let log = std::fs::read_to_string(tf.path().join(format!(".harness/spawn-{n}.log")))
        .unwrap_or_default();
    assert!(
        !log.contains("Apply complete!"),
        "the apply finished before it was killed:\n{log}"
    );
    assert!(
        log.contains("longhorn_volume.v: "),
        "the apply had not started on the volume:\n{log}"
    );
}

fn plan_error(tf: &Workdir, hcl: &str) -> TfOutput {
    tf.write_config(hcl);
    let (code, plan) = plan_output(tf);
    assert_eq!(code, 1, "expected the plan to fail:\n{plan}");
    assert!(!plan.stderr.contains("panic"), "{plan}");
    plan
}

#[test]
fn longhorn_provider_configuration_errors_are_clear() {
    let standin = Standin::start("provider");
    let tf = Workdir::new("longhorn_provider_errors");
    let volume = volume_hcl("cfg", "  size = \"1Gi\"\n");
    let req = required_providers_hcl(&["longhorn"]);
    tf.write_config(&format!("{req}provider \"longhorn\" {{}}\n{volume}"));
    tf.init();
    let token = standin.file("token");
    let dir = standin.dir().display().to_string();

    let missing = plan_error(
        &tf,
        &format!("{req}provider \"longhorn\" {{\n  config_path = \"{dir}/nope\"\n}}\n{volume}"),
    );
    assert_contains(&missing, &["Kubeconfig file not found", "/nope"]);

    let context = plan_error(
        &tf,
        &format!("{req}provider \"longhorn\" {{\n  config_path = \"{dir}/kubeconfig\"\n  config_context = \"prod\"\n}}\n{volume}"),
    );
    assert_contains(
        &context,
        &["Unknown kubeconfig context", "\"prod\"", "standin-token"],
    );

    let unreachable = plan_error(
        &tf,
        &format!("{req}provider \"longhorn\" {{\n  host = \"https://127.0.0.1:9\"\n  token = \"{}\"\n}}\n{volume}", token.trim()),
    );
    assert_contains(
        &unreachable,
        &[
            "Cannot reach the Kubernetes API server",
            "https://127.0.0.1:9",
        ],
    );

    let untrusted = plan_error(
        &tf,
        &format!(
            "{req}provider \"longhorn\" {{\n  host = \"{}\"\n  token = \"{}\"\n}}\n{volume}",
            standin.url,
            token.trim()
        ),
    );
    assert_contains(
        &untrusted,
        &["certificate is not trusted", "cluster_ca_certificate"],
    );

    let bad_token = plan_error(
        &tf,
        &format!(
            "{req}provider \"longhorn\" {{\n  host = \"{}\"\n  token = \"not-the-token\"\n  cluster_ca_certificate = file(\"{dir}/ca.crt\")\n}}\n{volume}",
            standin.url
        ),
    );
    assert_contains(
        &bad_token,
        &["Kubernetes credentials rejected (401 Unauthorized)"],
    );
    for output in [&unreachable, &untrusted, &bad_token] {
        let text = format!("{}{}", output.stdout, output.stderr);
        assert!(
            !text.contains(token.trim()),
            "the token leaked into the output:\n{output}"
        );
    }

    // 403: the token's user may do nothing (kubectl uses the certificate context meanwhile).
    standin.control("/_standin/forbid", json!({"token": token.trim()}));
    let forbidden = plan_error(
        &tf,
        &format!(
            "{req}provider \"longhorn\" {{\n  config_path = \"{dir}/kubeconfig\"\n}}\n{volume}"
        ),
    );
    assert_contains(
        &forbidden,
        &["Forbidden by the Kubernetes API server (403)"],
    );
    standin.kubectl(&["delete", "--raw", "/_standin/forbid"]);

    let none = plan_error(&tf, &format!("{req}provider \"longhorn\" {{}}\n{volume}"));
    assert_contains(&none, &["No Kubernetes credentials"]);

    // Values unknown at plan time are planned, not rejected: a second
    // provider configuration depends on a volume created in the same apply.
    tf.write_config(&format!(
        "{req}provider \"longhorn\" {{\n  config_path = \"{dir}/kubeconfig\"\n}}\n\
         provider \"longhorn\" {{\n  alias = \"later\"\n  config_path = \"{dir}/kubeconfig${{longhorn_volume.first.kubernetes_status.pvc_name}}\"\n}}\n\
         resource \"longhorn_volume\" \"first\" {{\n  name = \"first\"\n  size = \"1Gi\"\n  deletion_protection = false\n}}\n\
         resource \"longhorn_volume\" \"second\" {{\n  provider = longhorn.later\n  name = \"second\"\n  size = \"1Gi\"\n  deletion_protection = false\n}}\n"
    ));
    let (code, plan) = plan_output(&tf);
    assert_eq!(
        code, 2,
        "a plan with unknown provider settings failed:\n{plan}"
    );
    tf.apply_and_assert_idempotent();
    assert!(standin.volume("second").is_some());
    tf.destroy();
    assert!(standin.volume("first").is_none() && standin.volume("second").is_none());
}

#[test]
fn longhorn_missing_crd_is_one_named_diagnostic() {
    let standin = Standin::start_with(
        "nocrd",
        StandinOptions {
            no_longhorn_crd: true,
            ..Default::default()
        },
    );
    let tf = Workdir::new("longhorn_missing_crd");
    let plan = {
        tf.write_config(&format!(
            "{}{}",
            kubeconfig_provider(&standin),
            volume_hcl("data-2", "  size = \"1Gi\"\n")
        ));
        tf.init();
        let (code, plan) = plan_output(&tf);
        assert_eq!(code, 1, "{plan}");
        plan
    };
    assert_contains(
        &plan,
        &["Longhorn is not installed: volumes.longhorn.io is missing"],
    );
    assert_eq!(
        plan.stderr.matches("Error: ").count(),
        1,
        "one diagnostic:\n{plan}"
    );
    assert!(!plan.stderr.contains("404"), "{plan}");
}

#[test]
fn longhorn_volume_interrupted_applies_and_faults_converge() {
    let standin = Standin::start("faults");
    let tf = Workdir::new("longhorn_volume_faults");
    let config = |size: &str| {
        format!(
            "{}{}",
            kubeconfig_provider(&standin),
            volume_hcl(
                "data-3",
                &format!("  size = \"{size}\"\n  deletion_protection = false\n")
            )
        )
    };
    tf.write_config(&config("20Gi"));
    tf.init();

    // SIGKILL mid-create: Longhorn paused, so the apply is waiting.
    standin.control("/_standin/longhorn", json!({"paused": true}));
    let child = tf.spawn(&["apply", "-auto-approve"]);
    wait_until("the Volume to be created", Duration::from_secs(60), || {
        standin.volume("data-3").is_some()
    });
    std::thread::sleep(Duration::from_secs(1));
    kill_process_group(&child);
    let mut child = child;
    let _ = child.wait();
    assert_killed_mid_apply(&tf, 0);
    let state = standin.volume("data-3").unwrap()["status"]["state"].clone();
    assert!(
        state.is_null() || state == json!("creating"),
        "Longhorn was paused, yet the volume is {state}"
    );
    standin.control("/_standin/longhorn", json!({"paused": false}));
    tf.apply_and_assert_idempotent();
    assert_eq!(
        tf.resource_values("longhorn_volume.v")["state"],
        json!("detached")
    );

    // SIGKILL mid-expansion.
    standin.control("/_standin/longhorn", json!({"paused": true}));
    tf.write_config(&config("30Gi"));
    standin.clear_requests();
    let child = tf.spawn(&["apply", "-auto-approve"]);
    wait_until("the grow request", Duration::from_secs(60), || {
        !requests_to(&standin.requests(), "PATCH", "/volumes/data-3").is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    kill_process_group(&child);
    let mut child = child;
    let _ = child.wait();
    assert_killed_mid_apply(&tf, 1);
    standin.control("/_standin/longhorn", json!({"paused": false}));
    tf.apply_and_assert_idempotent();
    let volume = standin.volume("data-3").unwrap();
    assert_eq!(spec_size(&volume), 30 * GI);
    assert_eq!(volume["status"]["expansionRequired"], json!(false));
    assert_eq!(
        tf.resource_values("longhorn_volume.v")["size_bytes"],
        json!(30 * GI)
    );

    // Ctrl-C (Terraform's Stop) mid-expansion ends the wait promptly; the next apply converges.
    standin.control("/_standin/longhorn", json!({"paused": true}));
    tf.write_config(&config("32Gi"));
    standin.clear_requests();
    let mut child = tf.spawn(&["apply", "-auto-approve"]);
    wait_until("the grow request", Duration::from_secs(60), || {
        !requests_to(&standin.requests(), "PATCH", "/volumes/data-3").is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    let interrupted = std::time::Instant::now();
    // Ctrl-C in a terminal signals the whole foreground group (Terraform's
    // panicwrap parent ignores it; the providers ignore it by protocol).
    // SAFETY: killpg has no memory-safety preconditions; the group is our child's.
    unsafe {
        libc::killpg(child.id() as i32, libc::SIGINT);
    }
    let exited =
        crate::harness::wait::poll_until(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(
        exited.is_some(),
        "terraform did not end within 20 s of Ctrl-C"
    );
    eprintln!(
        "longhorn: Ctrl-C mid-expansion ended the apply in {:.1?}",
        interrupted.elapsed()
    );
    let log = std::fs::read_to_string(tf.path().join(".harness/spawn-2.log")).unwrap_or_default();
    assert!(
        normalized(&log).contains("Interrupted while waiting for the expansion of volume data-3"),
        "{log}"
    );
    standin.control("/_standin/longhorn", json!({"paused": false}));
    tf.apply_and_assert_idempotent();
    assert_eq!(spec_size(&standin.volume("data-3").unwrap()), 32 * GI);

    // A 500 on the apply is retried; the state is right.
    standin.control(
        "/_standin/faults",
        json!({"method": "PATCH", "path": "/volumes/data-3", "status": 500, "times": 2}),
    );
    tf.write_config(&format!(
        "{}{}",
        kubeconfig_provider(&standin),
        volume_hcl(
            "data-3",
            "  size = \"32Gi\"\n  deletion_protection = false\n  number_of_replicas = 2\n"
        )
    ));
    standin.clear_requests();
    tf.apply_and_assert_idempotent();
    let patches = requests_to(&standin.requests(), "PATCH", "/volumes/data-3").len();
    assert!(
        patches >= 3,
        "the 500s were not retried ({patches} PATCH requests)"
    );
    assert_eq!(
        standin.volume("data-3").unwrap()["spec"]["numberOfReplicas"],
        json!(2)
    );

    // An expansion that does not finish is reported with the volume's condition text.
    standin.control(
        "/_standin/longhorn",
        json!({"stuck_expansion": true, "condition_message": "replica rebuild stalled on node-1"}),
    );
    tf.write_config(&format!(
        "{}{}",
        kubeconfig_provider(&standin),
        volume_hcl(
            "data-3",
            "  size = \"40Gi\"\n  deletion_protection = false\n  number_of_replicas = 2\n  timeouts {\n    update = \"5s\"\n  }\n"
        )
    ));
    let failed = tf.apply_expect_error();
    assert_contains(
        &failed,
        &[
            "did not happen within 5s",
            "replica rebuild stalled on node-1",
        ],
    );
    standin.control("/_standin/longhorn", json!({"stuck_expansion": false}));
    tf.apply_and_assert_idempotent();
    assert_eq!(spec_size(&standin.volume("data-3").unwrap()), 40 * GI);

    // Deleted behind Terraform's back while Longhorn holds it (finalizer): the
    // plan creates it, and apply waits for the old one to go first.
    standin.control("/_standin/longhorn", json!({"paused": true}));
    standin.kubectl(&[
        "delete",
        "volumes.longhorn.io",
        "data-3",
        "-n",
        "longhorn-system",
        "--wait=false",
    ]);
    assert!(standin.volume("data-3").unwrap()["metadata"]["deletionTimestamp"].is_string());
    let (code, plan) = plan_output(&tf);
    assert_eq!(code, 2, "{plan}");
    assert_contains(&plan, &["1 to add, 0 to change, 0 to destroy"]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            standin.control("/_standin/longhorn", json!({"paused": false}));
        });
        tf.apply_and_assert_idempotent();
    });
    let volume = standin.volume("data-3").expect("made again");
    assert!(
        volume["metadata"]["deletionTimestamp"].is_null(),
        "{volume}"
    );
    assert_eq!(volume["status"]["state"], json!("detached"));

    tf.destroy();
    assert!(standin.volume("data-3").is_none());
}
