//! Restart-only PostgreSQL parameters put into effect: the nodes that
//! report one pending restart one at a time, standbys first (or last, when a
//! lowered limit must reach the primary first), the primary with repmgrd
//! paused so that no standby is promoted meanwhile, and pgpool's health
//! checks off so that no node is detached (sessions never detach one:
//! `failover_on_backend_shutdown` and `failover_on_backend_error` are off).

use std::time::{Duration, Instant};

use crate::framework::{poll_until, Context};

use crate::pgpool::ha::layout::{node_name, Layout, NodeLayout};
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::render::{self, REPMGR_DB};
use crate::pgpool::ha::target::{check_stop, wait_failure, Deadline, Failure};

use super::failure::step;
use super::host::{io_error, live_pid, write_file};
use super::observe::{self, connect_node};
use super::replication::streams_from;
use super::tools::{os, pg_ctl, pgpool_cmd, repmgr};

/// A parameter a node has read from its file but uses only after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingSetting {
    name: String,
    /// The value in use, as `pg_settings` shows it.
    running: Option<String>,
    /// The value in the configuration files, as `pg_file_settings` shows it.
    wanted: Option<String>,
}

impl PendingSetting {
    /// A hot standby refuses to run with less than the primary of these (it
    /// checks them in the WAL): lowered, the primary restarts first.
    fn lowers_a_standby_minimum(&self) -> bool {
        const CHECKED: [&str; 5] = [
            "max_connections",
            "max_worker_processes",
            "max_wal_senders",
            "max_prepared_transactions",
            "max_locks_per_transaction",
        ];
        let number = |v: &Option<String>| v.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
        CHECKED.contains(&self.name.as_str())
            && matches!((number(&self.wanted), number(&self.running)), (Some(w), Some(r)) if w < r)
    }
}

fn names(pending: &[PendingSetting]) -> String {
    pending.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Parameters changed in the node's files that wait for a restart; empty
/// when there are none or the node does not answer.
async fn pending_restart(node: &NodeLayout) -> Vec<PendingSetting> {
    const QUERY: &str = "SELECT s.name, s.setting AS running, \
        (SELECT f.setting FROM pg_catalog.pg_file_settings f WHERE f.name = s.name AND f.error IS NULL ORDER BY f.seqno DESC LIMIT 1) AS wanted \
        FROM pg_catalog.pg_settings s WHERE s.pending_restart ORDER BY s.name";
    let Some(client) = connect_node(node).await else {
        return Vec::new();
    };
    observe::simple_rows(&client, QUERY)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            Some(PendingSetting {
                name: r.get("name")?.clone()?,
                running: r.get("running").cloned().flatten(),
                wanted: r.get("wanted").cloned().flatten(),
            })
        })
        .collect()
}


/// Restarts the nodes that report a restart-only parameter pending (after
/// the reload): standbys one at a time, each until it streams again, then
/// the primary with repmgrd paused so that nobody promotes a standby
/// meanwhile. A lowered `max_connections` (and the like) restarts the
/// primary first, since a standby may not run with less than its primary.
pub(super) async fn restart_pending(
    ctx: &Context,
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    if layout.pause_marker().exists() {
        log::warn!("an earlier apply left repmgrd paused: unpausing it");
        unpause_repmgrd(spec, layout, primary, deadline).await?;
    }
    let mut pending = std::collections::BTreeMap::new();
    for slot in spec.slots() {
        let found = pending_restart(&layout.node(slot)).await;
        if !found.is_empty() {
            pending.insert(slot, found);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    pgpool_health_checks(spec, layout, false, deadline).await?;
    let restarted = async {
        let on_primary = pending.remove(&primary).unwrap_or_default();
        let primary_first = on_primary.iter().any(PendingSetting::lowers_a_standby_minimum);
        if primary_first {
            restart_primary(ctx, spec, layout, primary, &on_primary, deadline).await?;
            // A standby checks these against the values of the last
            // parameter change it replayed: it must have the restarted
            // primary's first.
            let standbys: Vec<usize> = pending.keys().copied().collect();
            replayed_everywhere(ctx, layout, &standbys, primary, deadline).await?;
        }
        for (slot, found) in &pending {
            restart_standby(ctx, layout, *slot, primary, found, deadline).await?;
        }
        if !primary_first && !on_primary.is_empty() {
            restart_primary(ctx, spec, layout, primary, &on_primary, deadline).await?;
        }
        Ok::<_, Failure>(())
    }
    .await;
    let restored = pgpool_health_checks(spec, layout, true, deadline).await;
    restarted?;
    restored
}

/// Waits until each of `standbys` has replayed the primary's WAL up to its
/// current position (taken now).
async fn replayed_everywhere(
    ctx: &Context,
    layout: &Layout,
    standbys: &[usize],
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let client = connect_node(&layout.node(primary)).await.ok_or_else(|| {
        Failure::general("Cannot connect to the primary", format!("{} does not answer after its restart.", node_name(primary)))
    })?;
    let rows = observe::simple_rows(&client, "SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn")
        .await
        .map_err(|e| Failure::general("Cannot query the primary", crate::sql::SqlError::from(e).message))?;
    let lsn = rows.first().and_then(|r| r.get("lsn").cloned().flatten()).unwrap_or_default();
    let query = format!("SELECT (pg_catalog.pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn)::text AS done");
    for &slot in standbys {
        let what = format!("{} to replay the restarted primary's WAL", node_name(slot));
        let query = query.as_str();
        poll_until(&ctx.stop, deadline.left().min(Duration::from_secs(120)), Duration::from_millis(200), &what, || async move {
            let Some(standby) = connect_node(&layout.node(slot)).await else {
                return Ok::<_, String>(None);
            };
            let rows = observe::simple_rows(&standby, query).await.unwrap_or_default();
            Ok(rows.first().and_then(|r| r.get("done").cloned().flatten()).filter(|d| d == "true").map(|_| ()))
        })
        .await
        .map_err(|e| wait_failure(&what, e))?;
    }
    Ok(())
}

/// pgpool's health checks off while nodes restart, on again afterwards:
/// pgpool.conf written with `health_check_period = 0`, then as the plan
/// has it, each time reloaded. A health check that saw the primary down
/// would detach it, and pgpool would then search for a new primary for ever
/// (`search_primary_node_timeout = 0`: repmgr, not pgpool, promotes) while
/// the same node comes back. Meanwhile a session that reaches a restarting
/// node fails (`failover_on_backend_error` and `failover_on_backend_shutdown`
/// off) and nothing is detached.
/// If the provider dies in between, the next apply finds pgpool.conf changed
/// and restarts pgpool with the right one.
async fn pgpool_health_checks(
    spec: &GroupSpec,
    layout: &Layout,
    on: bool,
    deadline: &Deadline,
) -> Result<(), Failure> {
    if live_pid(&layout.pgpool().pid(), "pgpool").is_none() {
        return Ok(());
    }
    let mut conf = render::pgpool_conf(spec, layout);
    if !on {
        conf = conf
            .lines()
            .map(|line| match line.split_once('=') {
                Some((key, _)) if key.trim() == "health_check_period" => "health_check_period = 0".to_string(),
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    if !write_file(&layout.pgpool().conf(), &conf, 0o600)? {
        return Ok(());
    }
    log::info!("pgpool health checks {}", if on { "on again" } else { "off while nodes restart" });
    pgpool_cmd(layout, &[os("reload")], deadline)
        .await
        .map_err(step("reload pgpool"))?;
    if !on {
        // Each health check process rereads the file when the reload reaches
        // it, between two checks: give a check in flight time to finish, and
        // a busy machine time to pass the signal on.
        let s = &spec.pgpool;
        let settle = (s.health_check_period + s.health_check_timeout).clamp(3, 15);
        tokio::time::sleep(Duration::from_secs(settle as u64)).await;
    }
    Ok(())
}

async fn restart_standby(
    ctx: &Context,
    layout: &Layout,
    slot: usize,
    primary: usize,
    pending: &[PendingSetting],
    deadline: &Deadline,
) -> Result<(), Failure> {
    check_stop(ctx)?;
    let node = layout.node(slot);
    log::info!(
        "restarting standby {} for parameters that take effect only at a restart: {}",
        node.name(),
        names(pending)
    );
    let started = Instant::now();
    pg_ctl(&node, "restart", deadline)
        .await
        .map_err(step(&format!("restart {}", node.name())))?;
    if !streams_from(ctx, layout, slot, primary, deadline.left().min(Duration::from_secs(120))).await {
        check_stop(ctx)?;
        return Err(Failure::general(
            "Standby not replicating after its restart",
            format!(
                "{} does not stream from {} after restarting for {}; see {}.",
                node.name(),
                node_name(primary),
                names(pending),
                node.postgres_log().display()
            ),
        ));
    }
    log::info!("{} restarted and streams again after {:.1?}", node.name(), started.elapsed());
    Ok(())
}

/// The primary restarted in place: repmgrd paused on every node first and
/// unpaused afterwards whatever happened (a failure, a stop).
async fn restart_primary(
    ctx: &Context,
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    pending: &[PendingSetting],
    deadline: &Deadline,
) -> Result<(), Failure> {
    check_stop(ctx)?;
    let node = layout.node(primary);
    log::info!(
        "restarting primary {} with repmgrd paused (no failover) for parameters that take effect only at a restart: {}",
        node.name(),
        names(pending)
    );
    pause_repmgrd(spec, layout, primary, deadline).await?;
    let restarted = async {
        check_stop(ctx)?;
        let started = Instant::now();
        pg_ctl(&node, "restart", deadline)
            .await
            .map_err(step(&format!("restart the primary {}", node.name())))?;
        log::info!("primary {} restarted in {:.1?}", node.name(), started.elapsed());
        repmgrd_sees_primary_again(ctx, spec, layout, primary, started).await;
        Ok::<_, Failure>(())
    }
    .await;
    let unpaused = unpause_repmgrd(spec, layout, primary, deadline).await;
    restarted?;
    unpaused
}

/// `repmgr service pause` (every node), with the marker written first; a
/// failure unpauses whatever was paused.
async fn pause_repmgrd(
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    write_file(&layout.pause_marker(), "repmgrd paused by apply\n", 0o600)?;
    match repmgr(&layout.node(primary), &["service", "pause"], deadline).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = unpause_repmgrd(spec, layout, primary, deadline).await;
            Err(Failure::general(
                "Cannot pause repmgrd before restarting the primary",
                format!("The primary was not restarted: {e}"),
            ))
        }
    }
}

/// `repmgr service unpause` until it succeeds on every node (tried from each
/// node's configuration in turn, for up to 30 s); never cut short by a stop.
async fn unpause_repmgrd(
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let mut from: Vec<usize> = vec![primary];
    from.extend(spec.slots().filter(|s| *s != primary));
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    for attempt in 0.. {
        let slot = from[attempt % from.len()];
        match repmgr(&layout.node(slot), &["service", "unpause"], deadline).await {
            Ok(_) => {
                log::info!("repmgrd unpaused on every node");
                let marker = layout.pause_marker();
                if marker.exists() {
                    std::fs::remove_file(&marker)
                        .map_err(io_error(&marker, "remove"))
                        .map_err(Failure::from)?;
                }
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Failure::general(
        "repmgrd is still paused",
        format!(
            "`repmgr service unpause` failed for 30 s, so automatic failover stays off until it succeeds; the next apply tries again, or run it by hand with -f {}. Last error: {last}",
            layout.node(primary).repmgr_conf().display()
        ),
    ))
}

/// Waits (up to 30 s) until each standby's repmgrd has seen the restarted
/// primary again (`repmgr.get_upstream_last_seen()` younger than the
/// restart), so that none is still counting reconnection attempts when
/// repmgrd is unpaused. A standby without repmgrd, or that cannot tell, is skipped.
async fn repmgrd_sees_primary_again(
    ctx: &Context,
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    restarted: Instant,
) {
    let standbys: Vec<usize> = spec
        .slots()
        .filter(|s| *s != primary && live_pid(&layout.node(*s).repmgrd_pid(), "repmgrd").is_some())
        .collect();
    let what = "every standby's repmgrd to see the restarted primary";
    let waited = poll_until(&ctx.stop, Duration::from_secs(30), Duration::from_millis(500), what, || {
        let standbys = standbys.clone();
        async move {
            for slot in standbys {
                let since = restarted.elapsed().as_secs() as i64;
                let Ok(client) = observe::node_settings(&layout.node(slot), REPMGR_DB).connect().await else {
                    continue;
                };
                let seen = observe::simple_rows(&client, "SELECT repmgr.get_upstream_last_seen()::text AS s").await;
                let Ok(rows) = seen else { continue };
                let secs = rows.first().and_then(|r| r.get("s").cloned().flatten()).and_then(|s| s.parse::<i64>().ok());
                // Whole seconds ago, so "after the restart" needs a second's margin.
                if !secs.is_some_and(|s| s >= 0 && s < since) {
                    return Ok::<_, String>(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await;
    if let Err(e) = waited {
        log::warn!("unpausing repmgrd without seeing every standby's repmgrd reconnect: {}", wait_failure(what, e).detail);
    }
}
