//! Each node's PostgreSQL files: `postgresql.node.conf`, `pg_hba.conf`,
//! and how other programs reach a node.

use std::fmt::Write as _;

use crate::pgpool::ha::layout::{node_name, Layout, NodeLayout, HOST};
use crate::pgpool::ha::model::GroupSpec;

use super::names::{quote_conf, SUPERUSER};

/// The line appended to every data directory's postgresql.conf. Relative
/// paths resolve against PGDATA, so after a clone or rewind (which copy the
/// primary's postgresql.conf) each node still includes its own file.
pub const DATA_DIR_INCLUDE: &str =
    "include '../postgresql.node.conf'  # shardform pgpool_ha: every setting lives there\n";

/// `postgresql.node.conf`: the group's settings, the user's, then this node's own.
pub fn node_conf(spec: &GroupSpec, layout: &Layout, slot: usize) -> String {
    let node = layout.node(slot);
    let mut out = String::from(
        "# Written by shardform (pgpool_ha) on every apply; edits are overwritten.\n\
         # Outside the data directory so that a clone or a rejoin never replaces it.\n\n",
    );
    let tls = (layout.tls_cert().display().to_string(), layout.tls_key().display().to_string());
    out.push_str(&group_settings(spec, &tls));
    out.push_str("\n# This node\n");
    let _ = writeln!(out, "listen_addresses = {}", quote_conf(HOST));
    let _ = writeln!(out, "port = {}", node.port);
    let _ = writeln!(
        out,
        "unix_socket_directories = {}",
        quote_conf(&node.socket_dir().display().to_string())
    );
    let _ = writeln!(
        out,
        "hba_file = {}",
        quote_conf(&node.hba().display().to_string())
    );
    let _ = writeln!(
        out,
        "cluster_name = {}",
        quote_conf(&format!("{}-{}", spec.name, node.name()))
    );
    out
}

/// The settings every node of a group has, on every target: replication and
/// failover, preload libraries, TLS with Citus (`tls`: certificate and key
/// paths), then the user's `postgresql_settings`.
pub fn group_settings(spec: &GroupSpec, tls: &(String, String)) -> String {
    let mut out = String::from("# Replication and failover\n");
    let wal_level = if spec.uses_citus() {
        "logical"
    } else {
        "replica"
    };
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name} = {value}");
    };
    line("wal_level", quote_conf(wal_level));
    line("max_wal_senders", "16".into());
    line("max_replication_slots", "16".into());
    line("hot_standby", "on".into());
    line("wal_log_hints", "on".into());
    line("full_page_writes", "on".into());
    line(
        "shared_preload_libraries",
        quote_conf(&spec.shared_preload_libraries().join(",")),
    );
    line(
        "synchronous_standby_names",
        quote_conf(&synchronous_standby_names(spec)),
    );
    if spec.uses_citus() {
        // Citus' default `citus.node_conninfo` is `sslmode=require`, and its
        // CREATE EXTENSION turns TLS on only on the node it runs on (the
        // primary of the day): every node serves TLS, so a promoted standby
        // is reachable too.
        line("ssl", "on".into());
        line("ssl_cert_file", quote_conf(&tls.0));
        line("ssl_key_file", quote_conf(&tls.1));
    }
    if !spec.postgresql_settings.is_empty() {
        out.push_str("\n# postgresql_settings\n");
        for (name, value) in &spec.postgresql_settings {
            let _ = writeln!(out, "{name} = {}", quote_conf(value));
        }
    }
    out
}

/// `ANY 1 (...)` over every node name: a node never waits for itself, so the
/// same value is right on whichever node is primary.
pub fn synchronous_standby_names(spec: &GroupSpec) -> String {
    if !spec.synchronous_replication || spec.standbys == 0 {
        return String::new();
    }
    let names: Vec<String> = spec
        .slots()
        .map(|s| format!("\"{}\"", node_name(s)))
        .collect();
    format!("ANY 1 ({})", names.join(", "))
}

/// Unix sockets are trusted: their directories (mode 0700) are reachable
/// only by the service user and root, and the provider, repmgr and
/// replication use them. TCP (loopback only) is trusted too without a
/// `superuser_password`, and asks for SCRAM with one.
pub fn pg_hba(spec: &GroupSpec) -> String {
    let tcp = if spec.superuser_password.is_some() {
        "scram-sha-256"
    } else {
        "trust"
    };
    format!(
        "# Written by shardform (pgpool_ha).\n\
         local all all trust\n\
         local replication all trust\n\
         host all all {HOST}/32 {tcp}\n\
         host replication all {HOST}/32 {tcp}\n"
    )
}

/// How repmgr (and so every standby's `primary_conninfo`, pg_basebackup and
/// pg_rewind) reaches a node: its unix socket, which needs no password.
pub fn node_conninfo(node: &NodeLayout, dbname: &str) -> String {
    format!(
        "host={} port={} user={SUPERUSER} dbname={dbname} connect_timeout=2",
        node.socket_dir().display(),
        node.port
    )
}
