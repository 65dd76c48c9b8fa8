//! The group's programs run on this machine: `pg_ctl`, `repmgr`, repmgrd
//! and pgpool, each started or stopped only when its pid file says so.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::pgpool::ha::layout::{Layout, NodeLayout};
use crate::pgpool::ha::render::{PGPOOL_BIN, PG_BINDIR};
use crate::pgpool::ha::target::{Deadline, Failure};

use super::failure::step;
use super::host::{self, live_pid, run, spawn_detached, LocalError};

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub fn pg(program: &str) -> std::path::PathBuf {
    Path::new(PG_BINDIR).join(program)
}

pub async fn pg_ctl(
    node: &NodeLayout,
    action: &str,
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let data = node.data();
    let log = node.postgres_log();
    let mut args: Vec<&OsStr> = vec![
        os("-D"),
        data.as_os_str(),
        os("-l"),
        log.as_os_str(),
        os("-w"),
        os("-t"),
        os("120"),
    ];
    if action != "start" && action != "reload" {
        args.extend([os("-m"), os("fast")]);
    }
    args.push(os(action));
    run(&pg("pg_ctl"), &args, &[], deadline.command()).await
}

pub async fn repmgr(
    node: &NodeLayout,
    args: &[&str],
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let conf = node.repmgr_conf();
    let mut all: Vec<&OsStr> = vec![os("-f"), conf.as_os_str()];
    all.extend(args.iter().map(|a| os(a)));
    run(&pg("repmgr"), &all, &[], deadline.command()).await
}

pub async fn start_node(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    if live_pid(&node.postmaster_pid(), "postgres").is_some() {
        return Ok(());
    }
    log::info!("starting PostgreSQL {}", node.name());
    pg_ctl(node, "start", deadline)
        .await
        .map_err(step(&format!("start {}", node.name())))?;
    Ok(())
}

pub async fn stop_node(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    if live_pid(&node.postmaster_pid(), "postgres").is_none() {
        return Ok(());
    }
    log::info!("stopping PostgreSQL {}", node.name());
    pg_ctl(node, "stop", deadline)
        .await
        .map_err(step(&format!("stop {}", node.name())))?;
    Ok(())
}

pub async fn stop_repmgrd(node: &NodeLayout) {
    if let Some(pid) = live_pid(&node.repmgrd_pid(), "repmgrd") {
        host::terminate(pid, "repmgrd", Duration::from_secs(10)).await;
    }
}

pub async fn start_repmgrd(node: &NodeLayout) -> Result<(), Failure> {
    if live_pid(&node.repmgrd_pid(), "repmgrd").is_some() {
        return Ok(());
    }
    log::info!("starting repmgrd for {}", node.name());
    let conf = node.repmgr_conf();
    spawn_detached(
        &pg("repmgrd"),
        &[os("-f"), conf.as_os_str(), os("--daemonize=false")],
        &node.repmgrd_log(),
    )
    .await
    .map_err(step(&format!("start repmgrd for {}", node.name())))
}

pub async fn pgpool_cmd(
    layout: &Layout,
    extra: &[&OsStr],
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let p = layout.pgpool();
    let (conf, pcp, hba) = (p.conf(), p.pcp_conf(), p.hba());
    let mut args: Vec<&OsStr> = vec![
        os("-f"),
        conf.as_os_str(),
        os("-F"),
        pcp.as_os_str(),
        os("-a"),
        hba.as_os_str(),
    ];
    args.extend_from_slice(extra);
    run(Path::new(PGPOOL_BIN), &args, &[], deadline.command()).await
}

pub async fn stop_pgpool(layout: &Layout, deadline: &Deadline) -> Result<(), Failure> {
    let p = layout.pgpool();
    let Some(pid) = live_pid(&p.pid(), "pgpool") else {
        return Ok(());
    };
    log::info!("stopping pgpool");
    if pgpool_cmd(layout, &[os("-m"), os("fast"), os("stop")], deadline)
        .await
        .is_err()
    {
        host::terminate(pid, "pgpool", Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Starts pgpool without `-D`: pgpool_status is kept across restarts, so a
/// node pgpool detached (an old primary) stays detached until the provider
/// has made it a healthy standby and attaches it.
pub async fn start_pgpool(layout: &Layout) -> Result<(), Failure> {
    let p = layout.pgpool();
    if live_pid(&p.pid(), "pgpool").is_some() {
        return Ok(());
    }
    log::info!("starting pgpool on port {}", p.port);
    let (conf, pcp, hba) = (p.conf(), p.pcp_conf(), p.hba());
    spawn_detached(
        Path::new(PGPOOL_BIN),
        &[
            os("-n"),
            os("-f"),
            conf.as_os_str(),
            os("-F"),
            pcp.as_os_str(),
            os("-a"),
            hba.as_os_str(),
        ],
        &p.log(),
    )
    .await
    .map_err(step("start pgpool"))
}
