//! Quick checks of the acceptance harness itself: real PostgreSQL instances,
//! the pinned Terraform, and workdirs that need none of our providers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;

use crate::harness::tempdir::TempDir;
use crate::harness::{
    require_citus, required_providers_hcl, terraform_binary, CitusCluster, PgInstance, PgOptions,
    ProviderBinary, Workdir,
};

fn single_value(rows: Vec<Vec<Option<String>>>) -> Option<String> {
    assert_eq!(rows.len(), 1, "expected one row, got {rows:?}");
    rows.into_iter()
        .next()
        .unwrap()
        .into_iter()
        .next()
        .flatten()
}

#[test]
fn postgres_instance_runs_sql_and_survives_stop_and_crash() {
    let pg = PgInstance::new(PgOptions::default().setting("work_mem", "8MB"));
    assert!(pg.is_running());
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(single_value(pg.sql("SHOW work_mem")), Some("8MB".into()));
    assert_eq!(single_value(pg.sql("SHOW fsync")), Some("off".into()));
    pg.sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1), (2)");
    let error = pg.sql_result("SELECT * FROM missing").unwrap_err();
    assert!(
        error.contains("does not exist"),
        "unexpected error text: {error}"
    );

    let port = pg.port();
    pg.stop();
    pg.stop(); // idempotent
    assert!(!pg.is_running());
    assert!(pg.sql_result("SELECT 1").is_err());

    pg.start();
    assert_eq!(pg.port(), port);
    assert_eq!(
        single_value(pg.sql("SELECT count(*) FROM kept")),
        Some("2".into())
    );

    pg.kill9();
    assert!(!pg.is_running());
    pg.start();
    assert_eq!(
        single_value(pg.sql("SELECT count(*) FROM kept")),
        Some("2".into())
    );

    let dir = pg.data_dir();
    drop(pg);
    assert!(!dir.exists(), "{} should be removed on drop", dir.display());
}

#[tokio::test]
async fn postgres_instance_serves_async_clients() {
    let pg = PgInstance::new(PgOptions::default());
    let client = pg.connect().await;
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "postgres");
    // The blocking helper must also work from inside a runtime.
    assert_eq!(single_value(pg.sql("SELECT 41 + 1")), Some("42".into()));
}

#[test]
fn terraform_binary_runs() {
    let binary = terraform_binary();
    let output = std::process::Command::new(&binary)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform version");
    let version = String::from_utf8_lossy(&output.stdout);
    println!(
        "{}: {}",
        binary.display(),
        version.lines().next().unwrap_or_default()
    );
    if std::env::var_os("TF_ACC_TERRAFORM_PATH").is_none() {
        assert!(
            version.starts_with("Terraform v1.0.3\n"),
            "unexpected version: {version}"
        );
    }
}

#[test]
fn workdir_applies_plans_and_destroys() {
    let workdir = Workdir::with_providers("selftest-outputs", Vec::new());
    workdir.write_config(r#"output "greeting" { value = "hello" }"#);
    workdir.init();
    workdir.apply_and_assert_idempotent();
    assert_eq!(
        workdir.state_json()["values"]["outputs"]["greeting"]["value"],
        json!("hello")
    );

    workdir.write_config(r#"output "greeting" { value = "changed" }"#);
    let (code, plan) = workdir.plan_exit_code(false);
    assert_eq!(
        code, 2,
        "a changed output must be a pending change:\n{plan}"
    );

    workdir.write_config(r#"output "greeting" { value = undefined_thing }"#);
    let failure = workdir.apply_expect_error();
    assert!(failure.stderr.contains("Error"), "{failure}");

    workdir.write_config(r#"output "greeting" { value = "hello" }"#);
    workdir.destroy();
}

#[test]
fn workdir_spawns_terraform_in_the_background() {
    let workdir = Workdir::with_providers("selftest-spawn", Vec::new());
    let mut child = workdir.spawn(&["version"]);
    assert!(child.wait().expect("wait for terraform").success());
}

/// `terraform init` installs a provider from the workdir's mirror (init does
/// not execute it, so a stub suffices).
#[test]
fn workdir_installs_providers_from_its_mirror() {
    let bin_dir = TempDir::new(&std::env::temp_dir(), "shardform-selftest-bin").expect("temp dir");
    let stub = bin_dir.path().join("terraform-provider-stub");
    fs::write(&stub, "#!/bin/sh\necho 'not a real provider' >&2\nexit 1\n").expect("write stub");
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).expect("chmod stub");
    let provider = ProviderBinary {
        type_name: "stub".into(),
        executable: PathBuf::from(&stub),
    };

    let workdir = Workdir::with_providers("selftest-mirror", vec![provider]);
    workdir.write_config(&required_providers_hcl(&["stub"]));
    let init = workdir.init();
    assert!(
        init.stdout.contains("Installed shardform/stub v0.1.0"),
        "{init}"
    );
}

#[test]
fn citus_cluster_nodes_accept_the_extension() {
    if !require_citus("citus_cluster_nodes_accept_the_extension") {
        return;
    }
    let cluster = CitusCluster::start(1);
    assert_eq!(cluster.workers.len(), 1);
    for node in cluster.nodes() {
        node.sql("CREATE EXTENSION citus");
        let version = single_value(node.sql("SELECT citus_version()"));
        println!("port {}: {version:?}", node.port());
        assert_eq!(
            single_value(node.sql("SHOW wal_level")),
            Some("logical".into())
        );
    }
}
