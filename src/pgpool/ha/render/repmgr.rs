//! Each node's `repmgr.conf`.

use std::fmt::Write as _;

use crate::pgpool::ha::layout::{repmgr_node_id, Layout};
use crate::pgpool::ha::model::GroupSpec;

use super::names::{quote_conf, PG_BINDIR, REPMGR_DB};
use super::postgres::node_conninfo;

pub fn repmgr_conf(spec: &GroupSpec, layout: &Layout, slot: usize) -> String {
    let node = layout.node(slot);
    let conf = node.repmgr_conf().display().to_string();
    let data = node.data().display().to_string();
    let log = node.postgres_log().display().to_string();
    let pg_ctl = format!("{PG_BINDIR}/pg_ctl -D {data} -l {log} -w -t 120");
    let repmgr = format!("{PG_BINDIR}/repmgr -f {conf} --log-to-file");
    let f = &spec.failover;
    let entries: Vec<(&str, String)> = vec![
        ("node_id", repmgr_node_id(slot).to_string()),
        ("node_name", quote_conf(&node.name())),
        (
            "conninfo",
            quote_conf(&node_conninfo(&node, REPMGR_DB)),
        ),
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
        (
            "repmgrd_pid_file",
            quote_conf(&node.repmgrd_pid().display().to_string()),
        ),
        (
            "log_file",
            quote_conf(&node.repmgrd_log().display().to_string()),
        ),
        ("log_level", quote_conf("INFO")),
        (
            "event_notification_command",
            quote_conf(&format!(
                "{} %n %e %s",
                layout.pgpool().event_script().display()
            )),
        ),
    ];
    let mut out = String::from("# Written by shardform (pgpool_ha).\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}
