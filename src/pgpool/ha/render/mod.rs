//! Every configuration file of a group, rendered as text. Pure functions:
//! the converge step writes them, the tests read them. Shared by every
//! target. Inside: `names` (programs, roles, quoting), then one module per
//! program's files.

mod event_script;
mod names;
mod passwords;
mod pgpool;
mod postgres;
mod repmgr;

pub use event_script::*;
pub use names::*;
pub use passwords::*;
pub use pgpool::*;
pub use postgres::*;
pub use repmgr::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Value;
    use crate::sql::Secret;
    use crate::pgpool::ha::model::{CitusSpec, GroupSpec};

    fn spec() -> GroupSpec {
        let mut spec = GroupSpec::from_value(&Value::Null);
        spec.name = "g".into();
        spec.base_dir = "/srv/g".into();
        spec.port_base = Some(7000);
        spec
    }

    fn citus_spec() -> GroupSpec {
        let mut spec = spec();
        spec.citus = Some(CitusSpec {
            coordinator_host: "coord'; rm -rf /; echo '".into(),
            coordinator_port: 6432,
            database: "my db".into(),
            username: "post:gres".into(),
            password: Some(r"pa:ss\word".into()),
        });
        spec
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(quote_sh("plain"), "'plain'");
        assert_eq!(quote_sh("it's"), r"'it'\''s'");
    }

    #[test]
    fn event_script_without_citus_only_tells_pgpool() {
        let spec = spec();
        let script = event_script(&spec, &spec.layout());
        assert!(script.contains(r#"/usr/sbin/pcp_"$tool" -h /srv/g/pgpool/run -p 7001 -U shardform -w"#), "{script}");
        assert!(script.contains("    promote_in_pgpool \"$node_id\""), "{script}");
        assert!(!script.contains("repoint_citus"));
        assert_shell_syntax(&script);
    }

    fn assert_shell_syntax(script: &str) {
        let checked = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "sh -n: {}\n{script}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }

    #[test]
    fn a_promotion_fences_the_old_primary_before_anything_else() {
        let mut spec = spec();
        let script = event_script(&spec, &spec.layout());
        let fence = script.find("    fence_old_primaries \"$node_id\" rejoin_old_primary").unwrap();
        assert!(fence < script.find("    promote_in_pgpool \"$node_id\"").unwrap(), "{script}");
        assert!(script.contains("    1) dir=/srv/g/node0 port=7002 ;;\n"), "{script}");
        assert!(script.contains("    9) dir=/srv/g/node8 port=7010 ;;\n"), "{script}");
        // Servers started under the rejoin lock do not inherit it.
        let starts: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("$pg_ctl start") || l.contains("--force-rewind --no-wait") || l.contains("--single"))
            .collect();
        assert_eq!(starts.len(), 3, "{script}");
        assert!(starts.iter().all(|l| l.contains("9>&-")), "{starts:?}");
        spec.failover.rejoin_failed_primary = false;
        let script = event_script(&spec, &spec.layout());
        assert!(script.contains("    fence_old_primaries \"$node_id\" : >>"), "{script}");
        assert_shell_syntax(&script);
    }

    #[test]
    fn event_script_with_citus_repoints_through_psql_variables() {
        let spec = citus_spec();
        let script = event_script(&spec, &spec.layout());
        // Every value reaches psql quoted for the shell, as a variable or in the environment.
        assert!(
            script.contains(r"PGHOST='coord'\''; rm -rf /; echo '\'''"),
            "{script}"
        );
        assert!(
            script.contains("PGPORT=6432 PGDATABASE='my db' PGUSER='post:gres'"),
            "{script}"
        );
        assert!(script.contains("PGPASSFILE='/srv/g/pgpool/citus.pgpass'"));
        assert!(!script.contains("pa:ss"), "the password is in the script");
        assert!(script.contains("-v ON_ERROR_STOP=1"));
        assert!(
            script.contains("-v group_ports='{7002,7003,7004,7005,7006,7007,7008,7009,7010}'"),
            "{script}"
        );
        assert!(script.contains("    2) new_port=7003 ;;\n"));
        assert!(script.contains("citus_update_node(nodeid, :'new_host', :'new_port'::int"));
        assert!(script.contains(">>/srv/g/pgpool/citus-failover.log 2>&1 &"));
        // The function is defined before the case that calls it.
        assert!(
            script.find("repoint_citus() {").unwrap()
                < script.find("    repoint_citus \"$node_id\"").unwrap()
        );
        assert_shell_syntax(&script);
    }

    #[test]
    fn citus_password_file_escapes_separators() {
        let spec = citus_spec();
        let pgpass = citus_pgpass(spec.citus.as_ref().unwrap()).unwrap();
        assert_eq!(
            pgpass,
            "coord'; rm -rf /; echo ':6432:my db:post\\:gres:pa\\:ss\\\\word\n"
        );
        let mut no_password = spec.citus.clone().unwrap();
        no_password.password = None;
        assert_eq!(citus_pgpass(&no_password), None);
    }

    #[test]
    fn citus_nodes_serve_tls() {
        let spec = citus_spec();
        let conf = node_conf(&spec, &spec.layout(), 0);
        assert!(conf.contains("shared_preload_libraries = 'citus,repmgr'"));
        assert!(conf.contains("ssl = on\nssl_cert_file = '/srv/g/tls/server.crt'\nssl_key_file = '/srv/g/tls/server.key'\n"));
        let plain = self::spec();
        assert!(!node_conf(&plain, &plain.layout(), 0).contains("ssl"));
    }

    #[test]
    fn a_superuser_password_makes_tcp_ask_for_scram_and_feeds_pgpool() {
        let mut spec = spec();
        assert!(pg_hba(&spec).contains("host all all 127.0.0.1/32 trust\n"));
        assert!(pgpool_conf(&spec, &spec.layout()).contains("allow_clear_text_frontend_auth = off\n"));
        spec.superuser_password = Some(Secret::new("s3cr:et"));
        let hba = pg_hba(&spec);
        assert!(hba.contains("local all all trust\nlocal replication all trust\n"), "{hba}");
        assert!(hba.contains("host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n"), "{hba}");
        let conf = pgpool_conf(&spec, &spec.layout());
        assert!(conf.contains("pool_passwd = '/srv/g/pgpool/pool_passwd'\n"), "{conf}");
        assert!(conf.contains("allow_clear_text_frontend_auth = on\n"), "{conf}");
        // The password is in pool_passwd only, never in pgpool.conf, the event script or repmgr.conf.
        assert!(!conf.contains("s3cr"));
        assert!(!event_script(&spec, &spec.layout()).contains("s3cr"));
        assert!(!repmgr_conf(&spec, &spec.layout(), 1).contains("s3cr"));
        let file = pool_passwd(spec.superuser_password.as_ref().unwrap());
        assert_eq!(file, "postgres:TEXTs3cr\\:et\n");
        let tricky = Secret::new(r"a\b:c");
        assert_eq!(pool_passwd(&tricky), "postgres:TEXTa\\\\b\\:c\n");
        let dir = std::env::temp_dir().join(format!("shardform-pool-passwd-{}", std::process::id()));
        std::fs::write(&dir, &file).unwrap();
        assert_eq!(read_pool_password(&dir).as_deref(), Some("s3cr:et"));
        std::fs::write(&dir, pool_passwd(&tricky)).unwrap();
        assert_eq!(read_pool_password(&dir).as_deref(), Some(r"a\b:c"));
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(format!("{spec:?}").matches("s3cr").count(), 0, "Debug shows the password");
    }

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(quote_conf("it's"), "'it''s'");
        assert_eq!(quote_conf(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn node_conf_keeps_user_settings_and_owns_the_node_ones() {
        let mut spec = spec();
        spec.postgresql_settings
            .insert("work_mem".into(), "64MB".into());
        spec.preload_libraries = vec!["citus".into()];
        let conf = node_conf(&spec, &spec.layout(), 1);
        assert!(conf.contains("work_mem = '64MB'"));
        assert!(conf.contains("port = 7003"));
        assert!(conf.contains("shared_preload_libraries = 'citus,repmgr'"));
        assert!(conf.contains("wal_level = 'logical'"));
        assert!(conf.contains("unix_socket_directories = '/srv/g/node1/run'"));
        // The node's own settings come last, so nothing overrides them.
        assert!(conf.find("work_mem").unwrap() < conf.find("port = ").unwrap());
    }

    #[test]
    fn synchronous_names_cover_every_node() {
        let mut spec = spec();
        assert_eq!(synchronous_standby_names(&spec), "");
        spec.synchronous_replication = true;
        assert_eq!(
            synchronous_standby_names(&spec),
            "ANY 1 (\"node0\", \"node1\", \"node2\")"
        );
    }

    #[test]
    fn pgpool_lists_one_backend_per_slot_and_defers_to_repmgr() {
        let spec = spec();
        let conf = pgpool_conf(&spec, &spec.layout());
        assert!(conf.contains("backend_port2 = 7004"));
        assert!(!conf.contains("backend_port3"));
        assert!(conf.contains("failover_on_backend_error = off"));
        assert!(conf.contains("failover_on_backend_shutdown = off"));
        assert!(conf.contains("search_primary_node_timeout = 0"));
        assert!(conf.contains("backend_application_name0 = 'node0'"));
    }

    #[test]
    fn repmgr_conf_has_per_node_pid_file_and_full_paths() {
        let spec = spec();
        let conf = repmgr_conf(&spec, &spec.layout(), 2);
        assert!(conf.contains("node_id=3\n"));
        assert!(conf.contains("repmgrd_pid_file='/srv/g/node2/repmgrd.pid'"));
        assert!(conf.contains(
            "promote_command='/usr/lib/postgresql/15/bin/repmgr -f /srv/g/node2/repmgr.conf"
        ));
        assert!(conf.contains("conninfo='host=/srv/g/node2/run port=7004 user=postgres dbname=repmgr"));
    }
}
