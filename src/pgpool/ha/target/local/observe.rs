//! Reading a group back: pid files, every node over SQL, pgpool's
//! `SHOW POOL_NODES`. A read never fails because a node is down; the node's
//! `status` says so, and the plan repairs it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::pgpool::ha::layout::{Layout, NodeLayout, PgpoolLayout, HOST, MAX_STANDBYS};
use crate::pgpool::ha::live::{GroupLive, NodeLive, PoolNode};
use crate::pgpool::ha::render::{self, SUPERUSER};
use crate::sql::{ConnectionSettings, SslMode};

use super::host::live_pid;

/// The provider reaches a node over its unix socket (directory mode 0700,
/// trusted in pg_hba.conf), so it needs no password even when TCP asks for one.
pub fn node_settings(node: &NodeLayout, database: &str) -> ConnectionSettings {
    ConnectionSettings {
        host: node.socket_dir().display().to_string(),
        port: node.port,
        database: database.into(),
        user: SUPERUSER.into(),
        password: None,
        sslmode: SslMode::Disable,
        connect_timeout: Duration::from_secs(3),
        ..ConnectionSettings::default()
    }
}

pub async fn connect_node(node: &NodeLayout) -> Option<Client> {
    node_settings(node, "postgres").connect().await.ok()
}

/// Rows of a simple query as text, by column name.
pub async fn simple_rows(
    client: &Client,
    query: &str,
) -> Result<Vec<BTreeMap<String, Option<String>>>, tokio_postgres::Error> {
    let messages = client.simple_query(query).await?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// A primary's current timeline (as `timeline`), from the name of its
/// current WAL file: right after a promotion, unlike pg_control_checkpoint().
pub const CURRENT_TIMELINE_QUERY: &str = render::CURRENT_TIMELINE_SQL;

async fn observe_node(node: NodeLayout) -> NodeLive {
    let mut live = NodeLive {
        slot: node.slot,
        port: node.port,
        has_data: node.has_data(),
        running: live_pid(&node.postmaster_pid(), "postgres").is_some(),
        repmgrd_running: live_pid(&node.repmgrd_pid(), "repmgrd").is_some(),
        ..NodeLive::default()
    };
    if !live.running {
        return live;
    }
    let Some(client) = connect_node(&node).await else {
        return live;
    };
    const QUERY: &str = "SELECT pg_catalog.pg_is_in_recovery()::text AS recovery, \
        CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
        ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::bigint::text END AS timeline, \
        (SELECT sender_port::text FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming') AS upstream, \
        (SELECT received_tli::text FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming') AS received_tli";
    if let Ok(rows) = simple_rows(&client, QUERY).await {
        if let Some(row) = rows.first() {
            let get = |k: &str| row.get(k).cloned().flatten();
            live.in_recovery = get("recovery").map(|v| v == "true");
            live.timeline = get("timeline").and_then(|v| v.parse().ok());
            live.upstream_port = get("upstream").and_then(|v| v.parse().ok());
            live.received_timeline = get("received_tli").and_then(|v| v.parse().ok());
        }
    }
    live
}

async fn replication_delays(node: &NodeLayout) -> BTreeMap<String, i64> {
    let Some(client) = connect_node(node).await else {
        return BTreeMap::new();
    };
    const QUERY: &str = "SELECT application_name, \
        COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), 0)::bigint::text AS delay \
        FROM pg_catalog.pg_stat_replication";
    simple_rows(&client, QUERY)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get("application_name")?.clone()?,
                r.get("delay")?.clone()?.parse().ok()?,
            ))
        })
        .collect()
}

/// `SHOW POOL_NODES` through the endpoint, as the superuser: with a
/// `superuser_password`, pgpool authenticates it from `pool_passwd`, where
/// the password is read from.
pub async fn pool_nodes(pgpool: &PgpoolLayout) -> Option<Vec<PoolNode>> {
    let settings = ConnectionSettings {
        host: HOST.into(),
        port: pgpool.port,
        database: "postgres".into(),
        user: SUPERUSER.into(),
        password: render::read_pool_password(&pgpool.pool_passwd()).map(crate::sql::Secret::new),
        sslmode: SslMode::Disable,
        connect_timeout: Duration::from_secs(3),
        ..ConnectionSettings::default()
    };
    let client = settings.connect().await.ok()?;
    let rows = simple_rows(&client, "SHOW POOL_NODES").await.ok()?;
    Some(
        rows.into_iter()
            .filter_map(|r| {
                let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
                Some(PoolNode {
                    id: get("node_id").parse().ok()?,
                    status: get("status"),
                    role: get("role"),
                })
            })
            .collect(),
    )
}

/// pgpool ends a session that starts a statement while it handles a
/// failover or an attach (milliseconds for an attach), so a running pgpool
/// is asked three times, half a second apart, before a read calls it down.
async fn pool_nodes_of_running_pgpool(pgpool: &PgpoolLayout) -> Option<Vec<PoolNode>> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(nodes) = pool_nodes(pgpool).await {
            return Some(nodes);
        }
    }
    None
}

/// Reads every node in `slots` (the wanted ones and any others on disk).
pub async fn observe(layout: &Layout, slots: &[usize]) -> GroupLive {
    let nodes: BTreeMap<usize, NodeLive> =
        join_all(slots.iter().map(|s| observe_node(layout.node(*s))))
            .await
            .into_iter()
            .map(|n| (n.slot, n))
            .collect();
    let primary = nodes
        .values()
        .filter(|n| n.in_recovery == Some(false))
        .max_by_key(|n| (n.timeline.unwrap_or(0), std::cmp::Reverse(n.slot)))
        .map(|n| n.slot);
    let pgpool = layout.pgpool();
    let pgpool_running = live_pid(&pgpool.pid(), "pgpool").is_some();
    let pool_nodes = if pgpool_running {
        pool_nodes_of_running_pgpool(&pgpool).await
    } else {
        None
    };
    let delays = match primary {
        Some(p) => replication_delays(&layout.node(p)).await,
        None => BTreeMap::new(),
    };
    GroupLive {
        nodes,
        primary,
        pool_nodes,
        delays,
        repmgrd_paused: layout.pause_marker().exists(),
    }
}

/// Slots with a node directory on disk.
pub fn slots_on_disk(layout: &Layout) -> Vec<usize> {
    (0..=MAX_STANDBYS)
        .filter(|s| layout.node(*s).dir.exists())
        .collect()
}
