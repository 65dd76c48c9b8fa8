//! Bringing a group to what the plan asks for, and repairing it: the same
//! steps serve create, update and repair, each checking the live state first,
//! so an interrupted apply is picked up by the next one.
//!
//! Order: files, the primary (bootstrap, or the one repmgr promoted), each
//! standby (start, rejoin, re-clone, clone), surplus nodes, repmgrd, pgpool.
//! Then (the target's next steps) restart-only parameters (`restart`) and
//! pgpool's view reconciled with repmgr's (`pgpool`: attach, promote).

use std::time::Duration;

use crate::framework::{AttrPath, Context};
use crate::pgpool::ha::layout::{node_name, repmgr_node_id, Layout};
use crate::pgpool::ha::live::{STATUS_FENCED, STATUS_NOT_REPLICATING, STATUS_UP};
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::target::{check_stop, Deadline, Failure};

use super::bootstrap::{bootstrap_primary, ensure_superuser_password};
use super::clone::clone_standby;
use super::failure::step;
use super::files::{prepare_base, prepare_pgpool_files, prepare_tls, refence, write_node_files};
use super::host::{self, io_error, live_pid, write_file};
use super::observe::{self, connect_node};
use super::rejoin::{crashed_as_primary, recover_fenced, rejoin};
use super::replication::streams_from;
use super::tools::{pg_ctl, repmgr, start_node, start_pgpool, start_repmgrd, stop_node, stop_pgpool, stop_repmgrd};

/// Brings the live group's nodes, repmgrd and pgpool to `spec`; returns the
/// primary's slot. `spec.port_base` must be known.
pub async fn converge(
    ctx: &Context,
    spec: &GroupSpec,
    deadline: &Deadline,
) -> Result<usize, Failure> {
    let layout = spec.layout();
    prepare_base(spec)?;
    prepare_tls(spec, &layout)?;
    let files = prepare_pgpool_files(spec, &layout).await?;
    let mut pgpool_conf_changed = files.conf_changed;
    let mut slots: Vec<usize> = spec.slots().collect();
    for s in observe::slots_on_disk(&layout) {
        if !slots.contains(&s) {
            slots.push(s);
        }
    }
    let mut live = observe::observe(&layout, &slots).await;
    refence(&layout, &slots, &live)?;
    // With synchronous replication, a commit waits for a standby: while none
    // streams (bootstrap, or every standby lost) the nodes are written without
    // it, or `primary register` and the clones would wait for ever.
    let any_standby_streams = slots
        .iter()
        .any(|s| live.status(*s) == STATUS_UP && live.primary != Some(*s));
    let interim = GroupSpec {
        synchronous_replication: spec.synchronous_replication && any_standby_streams,
        ..spec.clone()
    };
    let mut conf_changed = Vec::new();
    for slot in spec.slots() {
        if write_node_files(&interim, &layout, slot)? {
            conf_changed.push(slot);
        }
    }

    // The primary: the live one, else a stopped one started, else a new one.
    let primary = match live.primary {
        Some(p) => p,
        None => {
            let stopped_primary = slots.iter().copied().find(|s| {
                let n = layout.node(*s);
                n.has_data() && !n.data().join("standby.signal").exists() && !n.fenced_marker().exists()
            });
            match stopped_primary {
                Some(p) => start_node(&layout.node(p), deadline).await.map(|_| p)?,
                None if !slots.iter().any(|s| layout.node(*s).has_data()) => {
                    bootstrap_primary(spec, &layout, deadline).await?;
                    0
                }
                None => {
                    return Err(Failure::general(
                        "No primary",
                        "Every node of the group is a standby and none is running as primary; repmgr could not promote one. \
                         Start the node with the most recent data by hand (`repmgr standby promote`), then apply again.",
                    ))
                }
            }
        }
    };
    if !spec.slots().any(|s| s == primary) {
        return Err(Failure::at(
            AttrPath::root("standbys"),
            "The primary would be removed",
            format!("{} is the primary now and lies beyond the {} standbys asked for. Keep `standbys` at least {} until it is no longer primary.", node_name(primary), spec.standbys, primary),
        ));
    }
    check_stop(ctx)?;
    // Before pg_hba.conf asks TCP clients for it.
    let primary_node = layout.node(primary);
    if primary_node.fenced_marker().exists() {
        // Promoted after it had been fenced and rejoined: a primary now.
        std::fs::remove_file(primary_node.fenced_marker())
            .map_err(io_error(&primary_node.fenced_marker(), "remove"))
            .map_err(Failure::from)?;
    }
    // A new (or no more) password: pgpool stops while every node switches,
    // so that its checks never meet a node that wants the other one and
    // detach it. The role's password is set before pg_hba.conf asks for it,
    // and removed only after pg_hba.conf stopped asking.
    let mut reloaded = Vec::new();
    let pgpool_stopped_for_password =
        files.password_changed && live_pid(&layout.pgpool().pid(), "pgpool").is_some();
    if pgpool_stopped_for_password {
        stop_pgpool(&layout, deadline).await?;
    }
    let reload_running = |reloaded: &mut Vec<usize>| {
        let to_reload: Vec<usize> = conf_changed
            .iter()
            .copied()
            .filter(|s| !reloaded.contains(s) && live.nodes.get(s).is_some_and(|n| n.running))
            .collect();
        reloaded.extend(&to_reload);
        to_reload
    };
    let removing = spec.superuser_password.is_none();
    if files.password_changed && removing {
        for slot in reload_running(&mut reloaded) {
            pg_ctl(&layout.node(slot), "reload", deadline).await.map_err(step(&format!("reload {}", node_name(slot))))?;
        }
    }
    ensure_superuser_password(spec, &primary_node).await?;
    if files.password_changed && !removing {
        for slot in reload_running(&mut reloaded) {
            pg_ctl(&layout.node(slot), "reload", deadline).await.map_err(step(&format!("reload {}", node_name(slot))))?;
        }
    }
    if pgpool_stopped_for_password {
        start_pgpool(&layout).await?;
        pgpool_conf_changed = false;
    }
    if conf_changed.contains(&primary) && !reloaded.contains(&primary) {
        pg_ctl(&layout.node(primary), "reload", deadline)
            .await
            .map_err(step("reload the primary"))?;
    }

    // Standbys, one at a time: clones are heavy and share the machine.
    for slot in spec.slots().filter(|s| *s != primary) {
        check_stop(ctx)?;
        let node = layout.node(slot);
        // The event hook may be rejoining this node (an old primary) right
        // now: wait for it, then look again, and keep it out while repairing.
        let _lock = match host::lock_exclusive(&node.rejoin_lock(), Duration::ZERO).await? {
            Some(lock) => lock,
            None => {
                log::info!("{} is being rejoined by the failover hook: waiting", node.name());
                let within = deadline.left().min(Duration::from_secs(600));
                let lock = host::lock_exclusive(&node.rejoin_lock(), within).await?.ok_or_else(|| {
                    Failure::general(
                        "Node busy",
                        format!(
                            "The failover hook has been rejoining {} for {} s ({} is held); see {}. Apply again later.",
                            node.name(),
                            within.as_secs(),
                            node.rejoin_lock().display(),
                            node.dir.join("rejoin.log").display()
                        ),
                    )
                })?;
                live = observe::observe(&layout, &slots).await;
                lock
            }
        };
        let status = live.status(slot);
        if !node.has_data() {
            clone_standby(&layout, slot, primary, deadline).await?;
        } else if status == STATUS_FENCED {
            log::warn!(
                "{} is a second primary (an old primary that came back): fencing and rejoining it",
                node.name()
            );
            // Fenced on disk first: if apply stops here, it comes back read-only.
            write_file(&node.fenced_marker(), "", 0o600)?;
            write_file(&node.data().join("standby.signal"), "", 0o600)?;
            rejoin(ctx, &layout, slot, primary, deadline).await?;
        } else if !live.nodes.get(&slot).is_some_and(|n| n.running) {
            if crashed_as_primary(&node, deadline).await {
                recover_fenced(&node, deadline).await?;
                rejoin(ctx, &layout, slot, primary, deadline).await?;
            } else if node.data().join("standby.signal").exists() {
                start_node(&node, deadline).await?;
                if !streams_from(ctx, &layout, slot, primary, Duration::from_secs(15)).await {
                    rejoin(ctx, &layout, slot, primary, deadline).await?;
                }
            } else {
                rejoin(ctx, &layout, slot, primary, deadline).await?;
            }
        } else if status == STATUS_NOT_REPLICATING
            && !streams_from(ctx, &layout, slot, primary, Duration::from_secs(15)).await
        {
            rejoin(ctx, &layout, slot, primary, deadline).await?;
        } else if conf_changed.contains(&slot) && !reloaded.contains(&slot) {
            pg_ctl(&node, "reload", deadline)
                .await
                .map_err(step(&format!("reload {}", node.name())))?;
        }
        let streams = streams_from(
            ctx,
            &layout,
            slot,
            primary,
            deadline.left().min(Duration::from_secs(120)),
        )
        .await;
        if streams && node.fenced_marker().exists() {
            std::fs::remove_file(node.fenced_marker())
                .map_err(io_error(&node.fenced_marker(), "remove"))
                .map_err(Failure::from)?;
        }
        if !streams {
            return Err(Failure::general(
                "Standby not replicating",
                format!(
                    "{} does not stream from {} after repair; see {}.",
                    node.name(),
                    node_name(primary),
                    node.postgres_log().display()
                ),
            ));
        }
    }

    if interim.synchronous_replication != spec.synchronous_replication {
        log::info!("standbys stream: switching synchronous replication on");
        for slot in spec.slots() {
            if write_node_files(spec, &layout, slot)? {
                pg_ctl(&layout.node(slot), "reload", deadline)
                    .await
                    .map_err(step(&format!("reload {}", node_name(slot))))?;
            }
        }
    }

    // Surplus nodes (standbys lowered): stop, unregister, delete.
    for slot in slots.iter().copied().filter(|s| *s > spec.standbys) {
        check_stop(ctx)?;
        remove_node(&layout, slot, primary, deadline).await?;
    }

    for slot in spec.slots() {
        start_repmgrd(&layout.node(slot)).await?;
    }

    if pgpool_conf_changed {
        stop_pgpool(&layout, deadline).await?;
    }
    start_pgpool(&layout).await?;
    check_stop(ctx)?;
    Ok(primary)
}

async fn remove_node(
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    log::info!("removing {}", node.name());
    stop_repmgrd(&node).await;
    stop_node(&node, deadline).await?;
    let id = repmgr_node_id(slot).to_string();
    // From the primary's configuration: it is the one that can write the metadata.
    if let Err(e) = repmgr(
        &layout.node(primary),
        &["standby", "unregister", &format!("--node-id={id}")],
        deadline,
    )
    .await
    {
        log::warn!("repmgr could not unregister {}: {e}", node.name());
    }
    if let Some(client) = connect_node(&layout.node(primary)).await {
        let slot_name = format!("repmgr_slot_{id}");
        let _ = client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND NOT active",
                &[&slot_name],
            )
            .await;
    }
    std::fs::remove_dir_all(&node.dir)
        .map_err(io_error(&node.dir, "remove"))
        .map_err(Failure::from)?;
    Ok(())
}
