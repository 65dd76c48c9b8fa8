//! pgpool's files: `pgpool.conf`, `pcp.conf`, the PCP password file and
//! `pool_hba.conf`.

use std::fmt::Write as _;

use crate::pgpool::ha::layout::{Layout, HOST};
use crate::pgpool::ha::model::GroupSpec;

use super::names::{quote_conf, PCP_USER, SUPERUSER};

/// One node as pgpool reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    pub data_dir: String,
    pub name: String,
}

/// Where pgpool runs: what differs between targets in `pgpool.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpoolPlace {
    pub listen: String,
    pub port: u16,
    pub pcp_port: u16,
    pub socket_dir: String,
    pub pid: String,
    pub logdir: String,
    pub pool_passwd: String,
    pub backends: Vec<Backend>,
}

impl PgpoolPlace {
    /// The local target: loopback, ports and files under the group's base directory.
    pub fn local(spec: &GroupSpec, layout: &Layout) -> Self {
        let p = layout.pgpool();
        let path = |path: std::path::PathBuf| path.display().to_string();
        PgpoolPlace {
            listen: HOST.into(),
            port: p.port,
            pcp_port: p.pcp_port,
            socket_dir: path(p.socket_dir()),
            pid: path(p.pid()),
            logdir: path(p.logdir()),
            pool_passwd: path(p.pool_passwd()),
            backends: spec
                .slots()
                .map(|slot| {
                    let node = layout.node(slot);
                    Backend { host: HOST.into(), port: node.port, data_dir: path(node.data()), name: node.name() }
                })
                .collect(),
        }
    }
}

pub fn pgpool_conf(spec: &GroupSpec, layout: &Layout) -> String {
    pgpool_conf_at(spec, &PgpoolPlace::local(spec, layout))
}

/// `pgpool.conf` of a group at `place`: the same policy on every target.
pub fn pgpool_conf_at(spec: &GroupSpec, place: &PgpoolPlace) -> String {
    let s = &spec.pgpool;
    let dir = |path: &str| quote_conf(path);
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    let entries: Vec<(String, String)> = vec![
        (
            "backend_clustering_mode".into(),
            quote_conf("streaming_replication"),
        ),
        ("listen_addresses".into(), quote_conf(&place.listen)),
        ("port".into(), place.port.to_string()),
        ("socket_dir".into(), dir(&place.socket_dir)),
        ("pcp_listen_addresses".into(), quote_conf(&place.listen)),
        ("pcp_port".into(), place.pcp_port.to_string()),
        ("pcp_socket_dir".into(), dir(&place.socket_dir)),
        ("wd_ipc_socket_dir".into(), dir(&place.socket_dir)),
        ("pid_file_name".into(), dir(&place.pid)),
        ("logdir".into(), dir(&place.logdir)),
        ("memqcache_oiddir".into(), dir(&format!("{}/oiddir", place.logdir))),
        ("use_watchdog".into(), "off".into()),
        ("log_destination".into(), quote_conf("stderr")),
        ("logging_collector".into(), "off".into()),
        ("enable_pool_hba".into(), "off".into()),
        // With a superuser password, pgpool authenticates the superuser from
        // pool_passwd (and uses it for its own checks, whose passwords are
        // left empty for that; without one the file is empty); other roles send their password in clear to
        // pgpool over loopback, which answers the nodes' SCRAM with it.
        ("pool_passwd".into(), dir(&place.pool_passwd)),
        (
            "allow_clear_text_frontend_auth".into(),
            on_off(spec.superuser_password.is_some()),
        ),
        ("num_init_children".into(), s.num_init_children.to_string()),
        ("max_pool".into(), s.max_pool.to_string()),
        ("load_balance_mode".into(), on_off(s.load_balance_mode)),
        (
            "disable_load_balance_on_write".into(),
            quote_conf(&s.disable_load_balance_on_write),
        ),
        ("statement_level_load_balance".into(), "off".into()),
        ("sr_check_period".into(), s.sr_check_period.to_string()),
        ("sr_check_user".into(), quote_conf(SUPERUSER)),
        ("sr_check_password".into(), quote_conf("")),
        ("sr_check_database".into(), quote_conf("postgres")),
        (
            "health_check_period".into(),
            s.health_check_period.to_string(),
        ),
        (
            "health_check_timeout".into(),
            s.health_check_timeout.to_string(),
        ),
        ("health_check_user".into(), quote_conf(SUPERUSER)),
        ("health_check_password".into(), quote_conf("")),
        ("health_check_database".into(), quote_conf("postgres")),
        (
            "health_check_max_retries".into(),
            s.health_check_max_retries.to_string(),
        ),
        ("health_check_retry_delay".into(), "1".into()),
        ("connect_timeout".into(), "3000".into()),
        // repmgr is the failover authority: pgpool only detaches a node its
        // health checks find dead, and then looks for the primary repmgr
        // promotes, for ever. A session's read error or a node's shutdown
        // message (57P01: a restart, a fast or immediate stop,
        // pg_terminate_backend) only ends that session; with either on, a
        // planned restart of the primary would detach it (or a session's
        // load-balance standby) and leave pgpool without a primary.
        ("failover_command".into(), quote_conf("")),
        ("follow_primary_command".into(), quote_conf("")),
        ("failover_on_backend_error".into(), "off".into()),
        ("failover_on_backend_shutdown".into(), "off".into()),
        ("search_primary_node_timeout".into(), "0".into()),
        ("auto_failback".into(), "off".into()),
        // Off: standbys stream over unix sockets, so pgpool cannot match a
        // standby's upstream to a backend and would see no primary followed.
        // Fencing keeps an old primary from ever coming back writable.
        ("detach_false_primary".into(), "off".into()),
    ];
    let mut out = String::from("# Written by shardform (pgpool_ha); a change restarts pgpool.\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k} = {v}");
    }
    for (slot, node) in place.backends.iter().enumerate() {
        let _ = writeln!(out, "\nbackend_hostname{slot} = {}", quote_conf(&node.host));
        let _ = writeln!(out, "backend_port{slot} = {}", node.port);
        let _ = writeln!(out, "backend_weight{slot} = 1");
        let _ = writeln!(out, "backend_data_directory{slot} = {}", quote_conf(&node.data_dir));
        let _ = writeln!(
            out,
            "backend_flag{slot} = {}",
            quote_conf("ALLOW_TO_FAILOVER")
        );
        let _ = writeln!(out, "backend_application_name{slot} = {}", quote_conf(&node.name));
    }
    out
}

/// `pcp.conf`: the PCP user and the md5 of its password.
pub fn pcp_conf(md5_hex: &str) -> String {
    format!("# Written by shardform (pgpool_ha).\n{PCP_USER}:{md5_hex}\n")
}

/// `PCPPASSFILE` for the PCP tools (mode 0600).
pub fn pcppass(password: &str) -> String {
    format!("*:*:{PCP_USER}:{password}\n")
}

pub fn pool_hba() -> String {
    format!("# Written by shardform (pgpool_ha); unused while enable_pool_hba is off.\nlocal all all trust\nhost all all {HOST}/32 trust\n")
}
