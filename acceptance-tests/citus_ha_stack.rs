//! `examples/modules/citus-ha-stack` applied by real Terraform: HA groups
//! that require passwords, Citus membership over their primaries with
//! internode authentication, Sentry's nodestore_node in 64 shards, and the
//! pgAdmin server list in pgAdmin's import format.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;

use crate::harness::{require_citus, Workdir};
use crate::pgpool_ha::{group_pids, GroupGuard};

/// Every TCP connection to the nodes needs it (SCRAM); Citus gets it
/// through `internode_auth`.
const PASSWORD: &str = "S3cret stack pw";

/// psql as the superuser through the primary's Unix socket (trusted), so
/// the test needs no password.
fn psql(base: &Path, group: &str, node: &Json, query: &str) -> Vec<String> {
    let socket = base.join(group).join(node["name"].as_str().unwrap()).join("run");
    let out = std::process::Command::new("psql")
        .arg("-h")
        .arg(&socket)
        .args(["-p", &node["port"].to_string(), "-U", "postgres", "-d", "postgres", "-Atc", query])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{query} on {group}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The group's primary as pgpool_ha reports it.
fn primary<'a>(groups: &'a Json, group: &str) -> &'a Json {
    let nodes = groups[group].as_array().unwrap();
    let primaries: Vec<&Json> = nodes.iter().filter(|n| n["role"] == "primary").collect();
    assert_eq!(primaries.len(), 1, "{group}: {nodes:?}");
    primaries[0]
}

fn module_dir() -> String {
    format!("{}/examples/modules/citus-ha-stack", env!("CARGO_MANIFEST_DIR"))
}

fn root_config(base: &Path) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    citus  = {{ source = "shardform/citus", version = "0.1.0" }}
    pgpool = {{ source = "shardform/pgpool", version = "0.1.0" }}
  }}
}}

module "citus" {{
  source              = "{module}"
  base_dir            = "{base}"
  workers             = ["worker-1", "worker-2"]
  standbys            = 1
  shard_transfer_mode = "block_writes"
  deletion_protection = false
  postgresql_settings = {{ fsync = "off" }}
  superuser_password  = "{password}"
}}

provider "citus" {{
  host     = module.citus.coordinator.host
  port     = module.citus.coordinator.port
  username = "postgres"
  password = "{password}"
}}

output "coordinator" {{ value = module.citus.coordinator }}
output "workers" {{ value = module.citus.workers }}
output "groups" {{ value = module.citus.groups }}
output "tables" {{ value = module.citus.distributed_tables }}
output "servers" {{ value = module.citus.pgadmin_servers_json }}
"#,
        module = module_dir(),
        base = base.display(),
        password = PASSWORD
    )
}

fn outputs(tf: &Workdir) -> Json {
    let out = tf.expect_success(tf.run(&["output", "-json"]));
    serde_json::from_str(&out.stdout).expect("terraform output -json")
}

/// pgAdmin's import format (docs/en_US/import_export_servers.rst): every
/// server has Name, Group, Port, Username, SSLMode, MaintenanceDB and one of
/// Host, HostAddr or Service; passwords cannot be imported.
fn check_pgadmin_servers(text: &str) -> Vec<(String, String)> {
    let document: Json = serde_json::from_str(text).expect("servers.json is JSON");
    let servers = document["Servers"].as_object().expect("a Servers object");
    let mut seen = Vec::new();
    for (i, (key, server)) in servers.iter().enumerate() {
        assert!(key.parse::<u32>().is_ok_and(|n| n >= 1), "server key {key:?} is not a positive number");
        let server = server.as_object().unwrap_or_else(|| panic!("server {i} is not an object"));
        for field in ["Name", "Group", "Username", "SSLMode", "MaintenanceDB"] {
            assert!(server.get(field).is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())), "server {key}: {field} missing: {server:?}");
        }
        let port = server["Port"].as_u64().unwrap_or(0);
        assert!((1..=65535).contains(&port), "server {key}: Port {port}");
        assert!(["Host", "HostAddr", "Service"].iter().any(|f| server.contains_key(*f)), "server {key}: no Host");
        assert!(
            ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(&server["SSLMode"].as_str().unwrap()),
            "server {key}: SSLMode"
        );
        assert!(!server.keys().any(|k| k.to_lowercase().contains("password")), "server {key} carries a password field");
        seen.push((server["Group"].as_str().unwrap().to_string(), server["Name"].as_str().unwrap().to_string()));
    }
    seen
}

#[test]
fn citus_ha_stack_module_builds_the_seed_layout_with_an_empty_second_plan() {
    if !require_citus("citus_ha_stack_module_builds_the_seed_layout_with_an_empty_second_plan") {
        return;
    }
    let tf = Workdir::new("citus_ha_stack");
    let base = tf.path().join("groups");
    let _guard = GroupGuard { base: base.clone() };
    tf.write_config(&root_config(&base));
    tf.init();
    tf.apply_and_assert_idempotent();

    let out = outputs(&tf);
    let groups = &out["groups"]["value"];
    let coordinator = primary(groups, "coordinator");
    assert_eq!(out["coordinator"]["value"]["port"], coordinator["port"]);
    // Each worker group's current primary is what Citus registered.
    let registered: BTreeSet<String> = psql(
        &base,
        "coordinator",
        coordinator,
        "SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'",
    )
    .into_iter()
    .collect();
    let primaries: BTreeSet<String> = ["worker-1", "worker-2"].iter().map(|w| primary(groups, w)["port"].to_string()).collect();
    assert_eq!(registered, primaries);

    // nodestore_node in 64 shards, balanced 32/32, seen by Citus itself.
    let per_worker = psql(
        &base,
        "coordinator",
        coordinator,
        "SELECT count(*) FROM citus_shards WHERE table_name = 'nodestore_node'::regclass GROUP BY nodeport ORDER BY 1",
    );
    assert_eq!(per_worker, ["32", "32"]);
    let table = &out["tables"]["value"]["public.nodestore_node"];
    assert_eq!(table["shard_count"], 64, "{table}");
    for (_, worker) in out["workers"]["value"].as_object().unwrap() {
        assert_eq!(worker["shard_placements"], 32, "{worker}");
    }

    // SCRAM on TCP: no password, no connection; Citus has its internode
    // password on every group's primary.
    let refused = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &coordinator["port"].to_string(), "-U", "postgres", "-w", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a TCP connection without a password was accepted");
    for group in ["coordinator", "worker-1", "worker-2"] {
        let rows = psql(&base, group, primary(groups, group), "SELECT nodeid || ':' || rolename FROM pg_dist_authinfo ORDER BY nodeid");
        assert_eq!(rows, ["-1:postgres", "0:postgres"], "{group}");
    }
    for log in ["coordinator", "worker-1", "worker-2"].map(|g| base.join(g).join("node0/postgres.log")) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains(PASSWORD), "the password is in {}", log.display());
    }

    // The pgAdmin list: a server group per Citus group, every node with its
    // role, and each group's pgpool endpoint.
    let servers = check_pgadmin_servers(out["servers"]["value"].as_str().unwrap());
    let server_groups: BTreeSet<&str> = servers.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(server_groups, BTreeSet::from(["citus: coordinator", "citus: worker-1", "citus: worker-2"]));
    for group in &server_groups {
        let names: Vec<&str> = servers.iter().filter(|(g, _)| g == group).map(|(_, n)| n.as_str()).collect();
        assert_eq!(names.iter().filter(|n| n.ends_with("(primary)")).count(), 1, "{group}: {names:?}");
        assert_eq!(names.iter().filter(|n| n.ends_with("(standby)")).count(), 1, "{group}: {names:?}");
        assert_eq!(names.iter().filter(|n| n.ends_with("(pgpool)")).count(), 1, "{group}: {names:?}");
    }

    // Destroy stops every process of every group and removes their files.
    tf.destroy();
    assert!(group_pids(&base).is_empty(), "processes left: {:?}", group_pids(&base));
    let left: Vec<_> = std::fs::read_dir(&base).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "group directories left: {left:?}");
}
