//! An old primary, or a standby on a dead timeline, made a standby of the
//! primary again: crash recovery of a killed old primary, then `repmgr node
//! rejoin --force-rewind`, and a fresh clone when that does not end in a
//! node that follows.

use std::time::Duration;

use crate::framework::Context;
use crate::pgpool::ha::layout::{node_name, Layout, NodeLayout};
use crate::pgpool::ha::render::{self, REPMGR_DB};
use crate::pgpool::ha::target::{check_stop, Deadline, Failure};

use super::clone::{clone_standby, register_standby};
use super::failure::step;
use super::host::{run, write_file};
use super::observe::connect_node;
use super::replication::follows_after_rejoin;
use super::tools::{os, pg, repmgr, start_node, stop_node};

/// An old primary (or a standby on a dead timeline) back as a standby of
/// `primary`: `node rejoin --force-rewind`, and a fresh clone when the rewind
/// cannot be done (say, the node was never shut down cleanly) or the rejoined
/// node does not follow (repmgr judged from the last checkpoint that no
/// rewind was needed, but the node has WAL past the promotion).
pub async fn rejoin(
    ctx: &Context,
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    stop_node(&node, deadline).await?;
    // pg_rewind reads the primary's timeline from its control file, which only
    // a checkpoint after a promotion brings up to date.
    if let Some(client) = connect_node(&layout.node(primary)).await {
        if let Err(e) = client.simple_query("CHECKPOINT").await {
            log::warn!("CHECKPOINT on {} before the rewind: {e}", node_name(primary));
        }
    }
    let conninfo = render::node_conninfo(&layout.node(primary), REPMGR_DB);
    log::info!(
        "rejoining {} to {} with pg_rewind",
        node.name(),
        node_name(primary)
    );
    match repmgr(
        &node,
        &[
            "node",
            "rejoin",
            "-d",
            &conninfo,
            "--force-rewind",
            "--no-wait",
            "--verbose",
        ],
        deadline,
    )
    .await
    {
        Ok(_) => {
            start_node(&node, deadline).await?;
            register_standby(&node, primary, deadline).await?;
            if follows_after_rejoin(ctx, layout, slot, primary, deadline.left().min(Duration::from_secs(120))).await {
                return Ok(());
            }
            check_stop(ctx)?;
            log::warn!(
                "{} does not follow {} after the rejoin (it has WAL past the promotion): cloning it again",
                node.name(),
                node_name(primary)
            );
            clone_standby(layout, slot, primary, deadline).await
        }
        Err(e) => {
            log::warn!(
                "rejoin of {} failed, cloning it again instead: {e}",
                node.name()
            );
            clone_standby(layout, slot, primary, deadline).await
        }
    }
}

/// True when the node's control file says it stopped while running as a
/// primary (`in production`): an old primary killed in a failover.
pub async fn crashed_as_primary(node: &NodeLayout, deadline: &Deadline) -> bool {
    let data = node.data();
    let out = run(&pg("pg_controldata"), &[data.as_os_str()], &[], deadline.command()).await;
    out.is_ok_and(|text| {
        text.lines()
            .any(|l| l.starts_with("Database cluster state:") && l.trim_end().ends_with("in production"))
    })
}

/// Crash recovery of a killed old primary in single-user mode, as pg_rewind
/// would do it: no socket, so no client writes to it meanwhile, and it ends
/// cleanly shut down on its own timeline, ready for `node rejoin --force-rewind`.
/// Its fencing `standby.signal` is lifted only while it runs (single-user mode
/// refuses standby mode) and put back at once.
pub async fn recover_fenced(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    let data = node.data();
    let signal = data.join("standby.signal");
    log::info!("crash recovery of {} (an old primary) in single-user mode", node.name());
    let _ = std::fs::remove_file(&signal);
    let recovered = run(
        &pg("postgres"),
        &[os("--single"), os("-D"), data.as_os_str(), os("-c"), os("archive_mode=off"), os("template1")],
        &[],
        deadline.command(),
    )
    .await;
    write_file(&signal, "", 0o600)?;
    recovered.map_err(step(&format!("recover {} in single-user mode", node.name())))?;
    Ok(())
}
