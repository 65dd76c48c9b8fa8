//! `pgpool_ha` with `target = "kubernetes"`, as far as it goes yet: through
//! real Terraform, every attribute is validated at plan at its path, and a
//! valid plan ends with the one error saying the target cannot apply yet;
//! and the objects a group renders are accepted by the API stand-in (real
//! Kubernetes v1.32 schemas) through server-side apply.

use crate::harness::{required_providers_hcl, Workdir};

fn normalized(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn group_hcl(attributes: &str, kubernetes: &str) -> String {
    format!(
        "{}resource \"pgpool_ha\" \"g\" {{\n  name = \"w1\"\n  target = \"kubernetes\"\n  standbys = 1\n  deletion_protection = false\n{attributes}{kubernetes}}}\n",
        required_providers_hcl(&["pgpool"])
    )
}

fn block(extra: &str) -> String {
    format!("  kubernetes {{\n    namespace = \"db\"\n    image = \"registry.example.com/shardform/pgpool-ha:15\"\n{extra}  }}\n")
}

/// Plans `hcl` and returns the normalized output of a plan that must fail.
fn failing_plan(tf: &Workdir, hcl: &str) -> String {
    tf.write_config(hcl);
    let (code, out) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "the plan should fail:\n{out}");
    normalized(&format!("{}\n{}", out.stdout, out.stderr))
}

#[test]
fn pgpool_ha_kubernetes_target_validates_at_plan_and_says_it_cannot_apply() {
    let tf = Workdir::new("pgpool_ha_kubernetes_plan");
    tf.write_config(&group_hcl("", &block("")));
    assert!(tf.init().success());

    // Valid: the plan still fails, with the one clear error at target.
    let out = failing_plan(
        &tf,
        &group_hcl(
            "",
            &block("    node_selector = { \"kubernetes.io/arch\" = \"amd64\" }\n"),
        ),
    );
    assert!(
        out.contains("The kubernetes target cannot apply yet"),
        "{out}"
    );
    assert!(
        out.contains("target = \"kubernetes\""),
        "the diagnostic points at target: {out}"
    );
    assert!(!out.contains("Plan:"), "{out}");

    let cases: &[(&str, &str, &[&str])] = &[
        ("", "    storage_class = \"Fast SSD\"\n", &["Invalid StorageClass name", "kubernetes.storage_class must be a DNS-1123 subdomain"]),
        ("", "    storage_size = \"-10Gi\"\n", &["Invalid size", "kubernetes.storage_size"]),
        ("", "    storage_size = \"0Gi\"\n", &["kubernetes.storage_size must be greater than zero"]),
        ("", "    service_type = \"ExternalName\"\n", &["kubernetes.service_type must be one of"]),
        ("", "    volume_claims = [\"data-w1-nodes-0\"]\n", &["One volume claim per node", "lists 1 claims, but the group has 2 nodes"]),
        ("", "    volume_claims = [\"data-w1-nodes-0\", \"data-w1-nodes-1\"]\n    storage_class = \"longhorn\"\n", &["Conflicting storage settings"]),
        ("", "    volume_claims = [\"data-w1-nodes-0\", \"pvc-1\"]\n", &["Volume claim not named for its node", "data-w1-nodes-1"]),
        ("", "    node_selector = { \"disk\" = \"-ssd\" }\n", &["Invalid label value"]),
        ("  base_dir = \"/tmp/x\"\n", "", &["base_dir is for the local target"]),
    ];
    for (attributes, extra, expected) in cases {
        let out = failing_plan(&tf, &group_hcl(attributes, &block(extra)));
        for needle in *expected {
            assert!(
                out.contains(needle),
                "{attributes}{extra}: expected {needle:?} in:\n{out}"
            );
        }
        assert!(
            !out.contains("cannot apply yet") || expected.is_empty(),
            "{extra}: validation comes first:\n{out}"
        );
    }

    // A namespace that is no DNS label.
    let hcl = group_hcl("", &block("")).replace("namespace = \"db\"", "namespace = \"Prod_DB\"");
    let out = failing_plan(&tf, &hcl);
    assert!(
        out.contains("Invalid namespace")
            && out.contains("kubernetes.namespace must be a DNS-1123 label"),
        "{out}"
    );

    // An image reference that is not one.
    let hcl = group_hcl("", &block("")).replace(
        "registry.example.com/shardform/pgpool-ha:15",
        "pgpool ha:latest",
    );
    let out = failing_plan(&tf, &hcl);
    assert!(
        out.contains("Invalid image reference") && out.contains("kubernetes.image"),
        "{out}"
    );

    // The block is required with the target, and refused without it.
    let out = failing_plan(&tf, &group_hcl("", ""));
    assert!(out.contains("Missing kubernetes block"), "{out}");
    let hcl = group_hcl("  base_dir = \"/tmp/x\"\n", &block(""))
        .replace("target = \"kubernetes\"", "target = \"local\"");
    let out = failing_plan(&tf, &hcl);
    assert!(
        out.contains("kubernetes block without the kubernetes target"),
        "{out}"
    );
    // The local target needs base_dir.
    let hcl = group_hcl("", "").replace("target = \"kubernetes\"", "target = \"local\"");
    let out = failing_plan(&tf, &hcl);
    assert!(out.contains("Missing base_dir"), "{out}");
}

/// An object value of a resource's attributes, as Terraform sends it.
fn object(fields: Vec<(&str, shardform::cty::Value)>) -> shardform::cty::Value {
    shardform::cty::Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The objects of a sample group, applied to the stand-in by server-side
/// apply (`kubectl apply --server-side`, a real client), which validates
/// every one against the Kubernetes v1.32 JSON schemas; a second apply of
/// the same objects changes nothing.
#[test]
fn pgpool_ha_kubernetes_objects_are_valid_and_apply_to_the_api() {
    use shardform::cty::Value;
    let value = object(vec![
        ("name", Value::string("w1")),
        ("target", Value::string("kubernetes")),
        ("standbys", Value::int(2)),
        ("synchronous_replication", Value::Bool(true)),
        ("superuser_password", Value::string("s3cret")),
        (
            "postgresql_settings",
            Value::Map(
                [("work_mem".to_string(), Value::string("16MB"))]
                    .into_iter()
                    .collect(),
            ),
        ),
        (
            "kubernetes",
            object(vec![
                ("namespace", Value::string("default")),
                (
                    "image",
                    Value::string("registry.example.com/shardform/pgpool-ha:15"),
                ),
                ("service_type", Value::string("NodePort")),
                (
                    "node_selector",
                    Value::Map(
                        [("kubernetes.io/arch".to_string(), Value::string("amd64"))]
                            .into_iter()
                            .collect(),
                    ),
                ),
            ]),
        ),
    ]);
    let objects =
        shardform::pgpool::kubernetes_objects(&value, "pcp-secret").expect("the objects render");
    assert_eq!(objects.len(), 9);

    let standin = crate::harness::kube::Standin::start("pgpool_ha_objects");
    let dir =
        crate::harness::tempdir::TempDir::new(&std::env::temp_dir(), "shardform-pgpool-objects")
            .unwrap();
    let file = dir.path().join("objects.json");
    // A stream of JSON objects, one per line, as kubectl reads a manifest.
    let documents: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    std::fs::write(&file, documents.join("\n")).unwrap();
    let apply = |what: &str| {
        let (ok, stdout, stderr) = standin.kubectl_status(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "shardform-pgpool",
            ],
            Some(&file),
        );
        assert!(
            ok,
            "{what}: the stand-in refused the objects:\n{stdout}\n{stderr}"
        );
        stdout
    };
    let first = apply("first apply");
    for object in &objects {
        let (kind, name) = (
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
        );
        let path = match kind {
            "StatefulSet" | "Deployment" => format!(
                "/apis/apps/v1/namespaces/default/{}s/{name}",
                kind.to_lowercase()
            ),
            "PodDisruptionBudget" => {
                format!("/apis/policy/v1/namespaces/default/poddisruptionbudgets/{name}")
            }
            _ => format!("/api/v1/namespaces/default/{}s/{name}", kind.to_lowercase()),
        };
        let live = standin
            .get(&path)
            .unwrap_or_else(|| panic!("{kind} {name} is not in the API after apply:\n{first}"));
        let managers: Vec<&str> = live["metadata"]["managedFields"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            managers.contains(&"shardform-pgpool"),
            "{kind} {name}: managers {managers:?}"
        );
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "shardform",
            "{kind} {name}"
        );
    }
    let again = apply("second apply");
    assert!(
        again
            .lines()
            .all(|l| l.contains("serverside-applied") || l.trim().is_empty()),
        "{again}"
    );

    // The check is real: the same StatefulSet with a misplaced field is refused.
    let mut bad = objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap()
        .clone();
    bad["spec"]["antiAffinity"] = serde_json::json!({ "topologyKey": "kubernetes.io/hostname" });
    std::fs::write(&file, bad.to_string()).unwrap();
    let (ok, stdout, stderr) = standin.kubectl_status(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "shardform-pgpool",
        ],
        Some(&file),
    );
    assert!(
        !ok && format!("{stdout}{stderr}").contains("antiAffinity"),
        "a misplaced field was accepted:\n{stdout}\n{stderr}"
    );
}

/// psql as postgres in `pod` through `kubectl exec` (pods/exec via the API
/// server), with `env` set; its output trimmed, or its stderr when it failed.
fn psql_in(
    standin: &crate::harness::kube::Standin,
    pod: &str,
    env: &[&str],
    host: &str,
    port: &str,
    sql: &str,
) -> Result<String, String> {
    let mut args = vec!["exec", pod, "--", "env"];
    args.extend_from_slice(env);
    args.extend_from_slice(&[
        "/usr/lib/postgresql/15/bin/psql",
        "-X",
        "-A",
        "-t",
        "-h",
        host,
        "-p",
        port,
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        sql,
    ]);
    let (ok, stdout, stderr) = standin.kubectl_status(&args, None);
    if ok {
        Ok(stdout.trim().to_string())
    } else {
        Err(stderr)
    }
}

/// The rendered objects run for real: applied to a stand-in whose node agent
/// runs each pod's containers as local processes (Debian's PostgreSQL,
/// repmgr and pgpool, the rendered entrypoint scripts and configuration
/// files), a primary and two standbys come up replicating and pgpool
/// answers; then the primary's PostgreSQL stopped hard: a standby is
/// promoted and the old primary is fenced and rejoins. All read through
/// `kubectl exec` (pods/exec via the API server).
#[test]
fn pgpool_ha_kubernetes_objects_run_a_replicating_group_in_pods() {
    use shardform::cty::Value;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED pgpool_ha_kubernetes_objects_run_a_replicating_group_in_pods: the node agent needs root");
        return;
    }
    let value = object(vec![
        ("name", Value::string("g1")),
        ("target", Value::string("kubernetes")),
        ("standbys", Value::int(2)),
        ("superuser_password", Value::string("s3cret")),
        (
            "kubernetes",
            object(vec![
                ("namespace", Value::string("default")),
                (
                    "image",
                    Value::string("registry.example.com/shardform/pgpool-ha:15"),
                ),
            ]),
        ),
    ]);
    let objects =
        shardform::pgpool::kubernetes_objects(&value, "pcp-secret").expect("the objects render");
    let standin = crate::harness::kube::Standin::start_with(
        "pgpool_ha_pods",
        crate::harness::kube::StandinOptions {
            run_pods: true,
            ..Default::default()
        },
    );
    let file = standin.dir().join("objects.json");
    let documents: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    std::fs::write(&file, documents.join("\n")).unwrap();
    let (ok, stdout, stderr) = standin.kubectl_status(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "shardform-pgpool",
        ],
        Some(&file),
    );
    assert!(ok, "{stdout}{stderr}");
    let ready = |pod: &str| standin.pod_ready("default", pod);
    let nodes = ["g1-nodes-0", "g1-nodes-1", "g1-nodes-2"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !nodes.iter().all(|n| ready(n)) {
        if std::time::Instant::now() > deadline {
            // What the pods said: their processes and logs go with the stand-in.
            let mut report = String::new();
            let pods = standin
                .get("/api/v1/namespaces/default/pods")
                .unwrap_or_default();
            for pod in pods["items"].as_array().into_iter().flatten() {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                let (_, logs, err) = standin.kubectl_status(&["logs", "--tail=40", name], None);
                report += &format!("--- {name}: {}\n{logs}{err}\n", pod["status"]);
            }
            panic!("the group's node pods are not ready after 120 s:\n{report}");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let psql = |pod: &str, sql: &str| {
        psql_in(&standin, pod, &[], "/shardform/run", "5432", sql)
            .unwrap_or_else(|stderr| panic!("psql in {pod}: {stderr}"))
    };
    crate::harness::wait_until(
        "two streaming standbys",
        std::time::Duration::from_secs(60),
        || {
            psql(
                "g1-nodes-0",
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            ) == "2"
        },
    );
    assert_eq!(psql("g1-nodes-0", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(psql("g1-nodes-1", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(psql("g1-nodes-2", "SELECT pg_is_in_recovery()"), "t");

    // pgpool, in its own pod, in front: a write through it reaches the primary and is
    // replicated.
    let pods = standin.get("/api/v1/namespaces/default/pods").unwrap();
    let pgpool = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("g1-pgpool-"))
        .expect("the pgpool pod");
    crate::harness::wait_until(
        "the pgpool pod to be ready",
        std::time::Duration::from_secs(60),
        || ready(&pgpool),
    );
    let through_pgpool = |sql: &str| {
        psql_in(
            &standin,
            &pgpool,
            &["PGPASSWORD=s3cret"],
            "127.0.0.1",
            "9999",
            sql,
        )
        .unwrap_or_else(|stderr| panic!("psql through pgpool: {stderr}"))
    };
    // pgpool reaches every node (`pg_status`, the fifth column) and takes node 0 for the
    // primary. Whether a standby that started after pgpool is attached (`status`) is the
    // provider's to converge (as `settle` does for the local target), not checked here.
    crate::harness::wait_until(
        "pgpool to reach the three nodes and know the primary",
        std::time::Duration::from_secs(60),
        || {
            let nodes: Vec<Vec<String>> = through_pgpool("SHOW pool_nodes")
                .lines()
                .map(|l| l.split('|').map(str::to_string).collect())
                .collect();
            nodes.len() == 3
                && nodes
                    .iter()
                    .all(|n| n.get(4).map(String::as_str) == Some("up"))
                && nodes[0].get(7).map(String::as_str) == Some("primary")
        },
    );
    through_pgpool("CREATE TABLE written_through_pgpool (id int); INSERT INTO written_through_pgpool VALUES (7)");
    assert_eq!(
        psql("g1-nodes-0", "SELECT sum(id) FROM written_through_pgpool"),
        "7"
    );
    crate::harness::wait_until(
        "the write to reach the standbys",
        std::time::Duration::from_secs(20),
        || {
            (1..3).all(|i| {
                psql(
                    &format!("g1-nodes-{i}"),
                    "SELECT count(*) FROM pg_tables WHERE tablename = 'written_through_pgpool'",
                ) == "1"
            })
        },
    );

    // Failover in pods, with no Terraform run (what the provider will converge is not
    // involved): the primary's PostgreSQL stopped hard in its pod;
    // repmgrd on the standbys promotes one; the old primary's container ends (PostgreSQL stays
    // down), the kubelet starts it again and the entrypoint fences it and rejoins it as a standby.
    let (ok, _, stderr) = standin.kubectl_status(
        &[
            "exec",
            "g1-nodes-0",
            "--",
            "/usr/lib/postgresql/15/bin/pg_ctl",
            "-D",
            "/var/lib/postgresql/data/pgdata",
            "-m",
            "immediate",
            "stop",
        ],
        None,
    );
    assert!(ok, "stopping the primary: {stderr}");
    let role = |pod: &str| {
        psql_in(
            &standin,
            pod,
            &[],
            "/shardform/run",
            "5432",
            "SELECT pg_is_in_recovery()",
        )
        .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    let mut promoted = None;
    while promoted.is_none() && started.elapsed() < std::time::Duration::from_secs(120) {
        promoted = ["g1-nodes-1", "g1-nodes-2"]
            .into_iter()
            .find(|p| role(p) == "f");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let promoted = promoted.unwrap_or_else(|| panic!("no standby was promoted within 120 s"));
    let mut rejoined = false;
    while !rejoined && started.elapsed() < std::time::Duration::from_secs(240) {
        rejoined = role("g1-nodes-0") == "t";
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (_, logs, _) = standin.kubectl_status(&["logs", "g1-nodes-0"], None);
    assert!(
        rejoined,
        "the old primary did not come back as a standby:\n{logs}"
    );
    assert!(
        logs.contains("fenced, rejoining it"),
        "the old primary was not fenced first:\n{logs}"
    );
    // One primary only, the promoted node, with the data written before.
    let roles: Vec<String> = nodes.iter().map(|n| role(n)).collect();
    assert_eq!(
        roles.iter().filter(|r| r.as_str() == "f").count(),
        1,
        "roles {roles:?}"
    );
    assert_eq!(
        psql(promoted, "SELECT sum(id) FROM written_through_pgpool"),
        "7"
    );
    // Not asserted of the objects alone: that every node streams from the new primary soon
    // (in 1 of 4 runs here one had not within 60 s) and that writes through pgpool resume (a
    // session can wait on the old primary's address). Both are the provider's to converge:
    // repairing a node that does not follow, and pgpool agreeing with repmgr, as the local
    // target's converge and `settle` do.
}
