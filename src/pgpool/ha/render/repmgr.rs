//! Each node's `repmgr.conf`.

use std::fmt::Write as _;

use crate::pgpool::ha::layout::{repmgr_node_id, Layout};
use crate::pgpool::ha::model::GroupSpec;

use super::names::{quote_conf, PG_BINDIR, REPMGR_DB};
use super::postgres::node_conninfo;

/// Where a node runs: what differs between targets in `repmgr.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepmgrPlace {
    pub slot: usize,
    pub name: String,
    pub conf: String,
    pub data: String,
    pub postgres_log: String,
    pub conninfo: String,
    pub repmgrd_pid: String,
    pub repmgrd_log: String,
    pub event_script: String,
}

impl RepmgrPlace {
    /// The local target: files under the node's directory, its unix socket.
    pub fn local(layout: &Layout, slot: usize) -> Self {
        let node = layout.node(slot);
        let path = |p: std::path::PathBuf| p.display().to_string();
        RepmgrPlace {
            slot,
            name: node.name(),
            conf: path(node.repmgr_conf()),
            data: path(node.data()),
            postgres_log: path(node.postgres_log()),
            conninfo: node_conninfo(&node, REPMGR_DB),
            repmgrd_pid: path(node.repmgrd_pid()),
            repmgrd_log: path(node.repmgrd_log()),
            event_script: path(layout.pgpool().event_script()),
        }
    }
}

pub fn repmgr_conf(spec: &GroupSpec, layout: &Layout, slot: usize) -> String {
    repmgr_conf_at(spec, &RepmgrPlace::local(layout, slot))
}

/// `repmgr.conf` of the node at `place`: the same failover policy on every target.
pub fn repmgr_conf_at(spec: &GroupSpec, place: &RepmgrPlace) -> String {
    let slot = place.slot;
    let conf = place.conf.clone();
    let data = place.data.clone();
    let log = place.postgres_log.clone();
    let pg_ctl = format!("{PG_BINDIR}/pg_ctl -D {data} -l {log} -w -t 120");
    let repmgr = format!("{PG_BINDIR}/repmgr -f {conf} --log-to-file");
    let f = &spec.failover;
    let entries: Vec<(&str, String)> = vec![
        ("node_id", repmgr_node_id(slot).to_string()),
        ("node_name", quote_conf(&place.name)),
        ("conninfo", quote_conf(&place.conninfo)),
        ("data_directory", quote_conf(&data)),
        ("pg_bindir", quote_conf(PG_BINDIR)),
        ("use_replication_slots", "yes".into()),
        ("failover", quote_conf("automatic")),
        ("priority", "100".into()),
        (
            "promote_command",
            quote_conf(&format!("{repmgr} standby promote")),
        ),
        (
            "follow_command",
            quote_conf(&format!("{repmgr} standby follow --upstream-node-id=%n")),
        ),
        (
            "service_start_command",
            quote_conf(&format!("{pg_ctl} start")),
        ),
        (
            "service_stop_command",
            quote_conf(&format!("{pg_ctl} -m fast stop")),
        ),
        (
            "service_restart_command",
            quote_conf(&format!("{pg_ctl} -m fast restart")),
        ),
        (
            "service_reload_command",
            quote_conf(&format!("{pg_ctl} reload")),
        ),
        ("monitor_interval_secs", f.monitor_interval_secs.to_string()),
        ("reconnect_attempts", f.reconnect_attempts.to_string()),
        ("reconnect_interval", f.reconnect_interval.to_string()),
        ("standby_reconnect_timeout", "60".into()),
        ("repmgrd_pid_file", quote_conf(&place.repmgrd_pid)),
        ("log_file", quote_conf(&place.repmgrd_log)),
        ("log_level", quote_conf("INFO")),
        (
            "event_notification_command",
            quote_conf(&format!("{} %n %e %s", place.event_script)),
        ),
    ];
    let mut out = String::from("# Written by shardform (pgpool_ha).\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}
