//! `pgpool_ha` with a `superuser_password`: TCP connections to the nodes and
//! the endpoint need it (SCRAM), replication and the provider keep working
//! over the trusted unix sockets, other roles log in through pgpool with
//! their own passwords, and the password is found nowhere but `pool_passwd`,
//! which is emptied when the password is removed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::pgpool_ha::{sql, Group, LogsOnPanic};

/// A password with a quote, a colon, a space and a backslash.
const FIRST: &str = r"s3cr'et:pa55 w\rd";
const SECOND: &str = "an0ther-Secret";

fn hcl_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn write(group: &Group, password: Option<&str>) {
    let line = password.map(|p| format!("  superuser_password = {}\n", hcl_string(p))).unwrap_or_default();
    group.write(1, &format!("  deletion_protection = false\n{line}"));
    // Every statement logged: the one that sets the password must not be.
    let main = group.tf.path().join("main.tf");
    let hcl = std::fs::read_to_string(&main).unwrap();
    let logged = hcl.replace("synchronous_commit = \"on\"", "synchronous_commit = \"on\"\n    log_statement = \"all\"");
    assert_ne!(logged, hcl, "Group::write no longer writes the synchronous_commit line");
    group.tf.write_config(&logged);
}

/// One query as `user` with `password` over TCP; the error text on failure.
fn query_as(port: u16, user: &str, password: Option<&str>, query: &str) -> Result<String, String> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user(user).dbname("postgres").connect_timeout(std::time::Duration::from_secs(5));
    if let Some(p) = password {
        config.password(p);
    }
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        })?;
        tokio::spawn(connection);
        let rows = client.simple_query(query).await.map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default())
    })
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let name = entry.file_name().to_string_lossy().to_string();
            found.extend(files_containing(&path, needle).into_iter().map(|f| format!("{name}/{f}")));
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            }
        }
    }
    found
}

#[test]
fn pgpool_ha_superuser_password_guards_tcp_and_stays_secret() {
    let group = Group::new("pgpool_ha_auth");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    write(&group, Some(FIRST));
    tf.init();
    let applied = tf.apply_and_assert_idempotent();
    assert!(!applied.stdout.contains(FIRST) && !applied.stderr.contains(FIRST), "the password is in Terraform's output:\n{applied}");
    let endpoint = group.endpoint();
    let (node0, node1) = (group.node_port("node0"), group.node_port("node1"));
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);

    // TCP needs the password, on the nodes and through pgpool.
    for port in [node0, node1, endpoint] {
        let refused = query_as(port, "postgres", None, "SELECT 1").expect_err("a TCP login without the password was accepted");
        eprintln!("pgpool_ha_auth: port {port} without a password: {refused}");
        let refused = query_as(port, "postgres", Some("wrong"), "SELECT 1").expect_err("a wrong password was accepted");
        assert!(refused.contains("authentication failed"), "{refused}");
        assert_eq!(query_as(port, "postgres", Some(FIRST), "SELECT 1"), Ok("1".into()), "port {port}");
    }
    // A SCRAM verifier is stored, not the password.
    let stored = query_as(node0, "postgres", Some(FIRST), "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    // Writes through pgpool reach the standby (replication over the sockets).
    query_as(endpoint, "postgres", Some(FIRST), "CREATE TABLE t AS SELECT 42 AS v").unwrap();
    crate::harness::wait_until("the standby to replay", std::time::Duration::from_secs(30), || {
        query_as(node1, "postgres", Some(FIRST), "SELECT v FROM t").is_ok_and(|v| v == "42")
    });

    // Another role logs in through pgpool with its own password.
    query_as(endpoint, "postgres", Some(FIRST), "CREATE ROLE app LOGIN PASSWORD 'app-pw'").unwrap();
    crate::harness::wait_until("pgpool to let app in", std::time::Duration::from_secs(30), || {
        query_as(endpoint, "app", Some("app-pw"), "SELECT current_user").is_ok_and(|u| u == "app")
    });
    let refused = query_as(endpoint, "app", Some("nope"), "SELECT 1").expect_err("app logged in with a wrong password");
    eprintln!("pgpool_ha_auth: app with a wrong password through pgpool: {refused}");

    // The password is only in pgpool/pool_passwd, readable by its owner only.
    // A fragment without escapable characters: pool_passwd escapes `:` and `\`.
    let holders = files_containing(&group.base, "pa55 w");
    assert_eq!(holders, ["pgpool/pool_passwd"], "files holding the password");
    assert!(files_containing(&group.base, FIRST).is_empty());
    // Not even the verifier reached a log (log_statement = all).
    // (The data directories hold it in pg_authid, as they should.)
    let outside_data = |needle: &str| -> Vec<String> {
        files_containing(&group.base, needle).into_iter().filter(|f| !f.contains("/data/")).collect()
    };
    assert_eq!(outside_data("SCRAM-SHA-256$"), Vec::<String>::new(), "a SCRAM verifier was logged");
    assert_eq!(outside_data("ALTER ROLE"), Vec::<String>::new(), "the password statement was logged");
    assert!(files_containing(&group.base, "SELECT 42 AS v").iter().any(|f| f.ends_with("postgres.log")), "log_statement = all does not log");
    let mode = std::fs::metadata(group.base.join("pgpool/pool_passwd")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    assert!(state.contains("\"superuser_password\""), "state without the attribute");
    let plan = tf.run(&["plan"]);
    assert!(!plan.stdout.contains(FIRST) && !plan.stderr.contains(FIRST), "{plan}");

    // A new password: the old one stops working, replication carries on.
    write(&group, Some(SECOND));
    let changed = tf.apply_and_assert_idempotent();
    assert!(!changed.stdout.contains(SECOND) && !changed.stdout.contains(FIRST), "{changed}");
    for port in [node0, node1, endpoint] {
        assert!(query_as(port, "postgres", Some(FIRST), "SELECT 1").is_err(), "the old password still works on {port}");
        assert_eq!(query_as(port, "postgres", Some(SECOND), "SELECT 1"), Ok("1".into()), "port {port}");
    }
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);
    assert!(files_containing(&group.base, "pa55 w").is_empty());

    // Without a password TCP is trusted again and pool_passwd is gone.
    write(&group, None);
    tf.apply_and_assert_idempotent();
    for port in [node0, node1, endpoint] {
        assert!(sql(port, "SELECT 1").is_ok(), "port {port} still asks for a password");
    }
    assert_eq!(std::fs::read_to_string(group.base.join("pgpool/pool_passwd")).unwrap(), "", "pool_passwd still holds a password");
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);
    tf.destroy();
    assert!(group.pids().is_empty());
}

/// Terraform 1.11+: the write-only forms of both passwords work as the plain
/// ones do and leave no secret in plan or state files; rotation goes by
/// `*_wo_version`. Older Terraform refuses them at validate, naming the path.
/// Also: a protected group's destroy is refused at plan on Terraform 1.3+.
#[test]
fn pgpool_ha_write_only_passwords_stay_out_of_state() {
    const WO_FIRST: &str = "wr1te-0nly:First";
    const WO_SECOND: &str = "wr1te-0nly:Second";
    let group = Group::new("pgpool_ha_write_only");
    let _logs = LogsOnPanic(&group.base);
    let tf = &group.tf;
    let config = |password: &str, version: u32, protected: bool| {
        format!(
            "  deletion_protection = {protected}\n  superuser_password_wo = {}\n  superuser_password_wo_version = {version}\n",
            hcl_string(password)
        )
    };
    group.write(1, &config(WO_FIRST, 1, true));
    tf.init();
    if crate::harness::terraform_version() < (1, 11) {
        let (code, plan) = tf.plan_exit_code(true);
        assert_eq!(code, 1, "{plan}");
        assert!(plan.stderr.contains("Write-only attribute needs Terraform 1.11"), "{plan}");
        assert!(plan.stderr.contains("superuser_password_wo"), "{plan}");
        assert!(!group.base.exists(), "a refused plan created the group");
        eprintln!("pgpool_ha_write_only: Terraform {:?} refuses write-only attributes at plan", crate::harness::terraform_version());
        return;
    }
    let applied = tf.apply_and_assert_idempotent();
    assert!(!applied.stdout.contains(WO_FIRST), "{applied}");
    let (endpoint, node0) = (group.endpoint(), group.node_port("node0"));
    for port in [node0, endpoint] {
        assert!(query_as(port, "postgres", None, "SELECT 1").is_err(), "port {port} lets in without a password");
        assert_eq!(query_as(port, "postgres", Some(WO_FIRST), "SELECT 1"), Ok("1".into()), "port {port}");
    }
    let state_text = || std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    assert!(!state_text().contains("wr1te-0nly"), "a write-only password is in the state");
    let state = group.state();
    assert!(state["superuser_password_wo"].is_null() && state["superuser_password"].is_null(), "{state}");
    assert_eq!(state["superuser_password_wo_version"], 1);

    // A new value alone is invisible to Terraform; a new version applies it.
    group.write(1, &config(WO_SECOND, 2, true));
    let plan_file = tf.path().join("rotate.tfplan");
    let planned = tf.run(&["plan", "-out", plan_file.to_str().unwrap()]);
    assert!(planned.success(), "{planned}");
    let shown = tf.run(&["show", "-json", plan_file.to_str().unwrap()]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    // The plan's values, not `configuration`, which echoes the literal in main.tf.
    for part in ["planned_values", "resource_changes", "prior_state"] {
        let text = shown[part].to_string();
        assert!(!text.contains("wr1te-0nly"), "a write-only password is in the saved plan's {part}: {text}");
    }
    assert_eq!(shown["resource_changes"][0]["change"]["actions"], serde_json::json!(["update"]));
    let _ = std::fs::remove_file(&plan_file);
    tf.apply_and_assert_idempotent();
    assert!(query_as(endpoint, "postgres", Some(WO_FIRST), "SELECT 1").is_err(), "the old password still works");
    assert_eq!(query_as(endpoint, "postgres", Some(WO_SECOND), "SELECT 1"), Ok("1".into()));
    assert!(!state_text().contains("wr1te-0nly"));
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);

    // Import of a group made with write-only passwords keeps them out of state too.
    tf.import_and_compare("pgpool_ha.g", group.base.to_str().unwrap(), &[]);

    // Terraform 1.3+ plans destroys through the provider: refused before anything stops.
    // The group's lasting processes (postmasters, pgpool); backends come and go.
    let daemons = || -> Vec<Option<i32>> {
        ["node0/data/postmaster.pid", "node1/data/postmaster.pid", "pgpool/pgpool.pid"]
            .map(|f| {
                // pgpool pads its pid file with NUL bytes.
                let text = std::fs::read_to_string(group.base.join(f)).ok()?;
                text.lines().next()?.trim_matches(|c: char| c.is_whitespace() || c == '\0').parse().ok()
            })
            .to_vec()
    };
    let before = daemons();
    assert!(
        before.iter().all(Option::is_some),
        "{before:?}; pgpool/: {:?}",
        std::fs::read_dir(group.base.join("pgpool")).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let refused = tf.run(&["plan", "-destroy"]);
    assert!(!refused.success(), "plan -destroy of a protected group succeeded:\n{refused}");
    assert!(refused.stderr.contains("Deletion protection is on"), "{refused}");
    assert_eq!(daemons(), before, "a refused destroy plan changed the group's processes");
    let alive = group.pids();
    assert!(before.iter().flatten().all(|pid| alive.contains(pid)), "a daemon stopped: {before:?} vs {alive:?}");

    // Both passwords' write-only forms set together with the plain ones: refused.
    group.write(1, &format!("{}  superuser_password = \"plain\"\n", config(WO_SECOND, 2, false)));
    let (code, conflict) = tf.plan_exit_code(true);
    assert_eq!(code, 1, "{conflict}");
    assert!(conflict.stderr.contains("Conflicting passwords"), "{conflict}");

    group.write(1, &config(WO_SECOND, 2, false));
    tf.apply_and_assert_idempotent();
    tf.destroy();
    assert!(group.pids().is_empty());
}
