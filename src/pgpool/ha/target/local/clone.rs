//! A standby made as a fresh copy of the primary (`repmgr standby clone`),
//! and registered with repmgr.

use crate::pgpool::ha::layout::{repmgr_node_id, Layout, NodeLayout};
use crate::pgpool::ha::render::{REPMGR_DB, SUPERUSER};
use crate::pgpool::ha::target::{Deadline, Failure};

use super::failure::step;
use super::host::io_error;
use super::tools::{repmgr, start_node, stop_node};

/// A fresh copy of the primary (removing a broken data directory first).
pub async fn clone_standby(
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    let source = layout.node(primary);
    stop_node(&node, deadline).await.ok();
    if node.data().exists() {
        log::info!(
            "removing the old data directory of {} before cloning it again",
            node.name()
        );
        std::fs::remove_dir_all(node.data())
            .map_err(io_error(&node.data(), "remove"))
            .map_err(Failure::from)?;
    }
    log::info!("cloning {} from {}", node.name(), source.name());
    let port = source.port.to_string();
    let socket = source.socket_dir().display().to_string();
    repmgr(
        &node,
        &[
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            SUPERUSER,
            "-d",
            REPMGR_DB,
            "standby",
            "clone",
            "--fast-checkpoint",
        ],
        deadline,
    )
    .await
    .map_err(step(&format!(
        "clone {} from {}",
        node.name(),
        source.name()
    )))?;
    start_node(&node, deadline).await?;
    register_standby(&node, primary, deadline).await
}

pub async fn register_standby(
    node: &NodeLayout,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let upstream = repmgr_node_id(primary).to_string();
    repmgr(
        node,
        &[
            "standby",
            "register",
            "--force",
            &format!("--upstream-node-id={upstream}"),
        ],
        deadline,
    )
    .await
    .map_err(step(&format!("register {} with repmgr", node.name())))?;
    Ok(())
}
