//! Stopping every process of a group and deleting what it wrote: destroy,
//! and the clean-up after a failed create.

use std::path::Path;

use crate::pgpool::ha::layout::Layout;
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::target::{Deadline, Failure};

use super::host::{io_error, live_pid};
use super::observe;
use super::tools::{stop_node, stop_pgpool, stop_repmgrd};

/// Stops every process of the group: pgpool, then every repmgrd (so none
/// promotes a standby while the primary stops), then standbys, then the rest.
pub async fn stop_all(layout: &Layout, deadline: &Deadline) -> Result<(), Failure> {
    stop_pgpool(layout, deadline).await?;
    let slots = observe::slots_on_disk(layout);
    for s in &slots {
        stop_repmgrd(&layout.node(*s)).await;
    }
    let mut ordered: Vec<usize> = slots.clone();
    ordered.sort_by_key(|s| !layout.node(*s).data().join("standby.signal").exists());
    for s in ordered {
        let node = layout.node(s);
        if let Err(e) = stop_node(&node, deadline).await {
            log::warn!("{}: {}", e.summary, e.detail);
            if let Some(pid) = live_pid(&node.postmaster_pid(), "postgres") {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
        }
    }
    kill_strays(&layout.base);
    Ok(())
}

/// The group's own leftovers (a repmgrd or pg_ctl whose pid file is gone) are
/// killed: processes of the group's programs, run by the group's account
/// (the owner of its node directories) or by the provider's, whose command
/// line names the base directory. Nothing else is touched, whatever its
/// command line says: a `tail -f` of a log, an editor, another user's shell.
fn kill_strays(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    const GROUP_PROGRAMS: &[&str] = &["postgres", "repmgrd", "repmgr", "pgpool", "pg_ctl"];
    let needle = format!("{}/", base.display());
    // SAFETY: geteuid has no preconditions.
    let mut owners = vec![unsafe { libc::geteuid() }];
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                owners.push(meta.uid());
            }
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !GROUP_PROGRAMS.contains(&comm.trim()) {
            continue;
        }
        if !entry.metadata().is_ok_and(|m| owners.contains(&m.uid())) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            log::warn!("killing leftover {} process {pid} of the group", comm.trim());
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// After a failed create of a new group: stops what it started and removes
/// what it wrote. The base directory itself goes only when the create made
/// it (`keep_base_dir` false); it was empty before, so all inside is the
/// create's own.
pub async fn discard_created(spec: &GroupSpec, keep_base_dir: bool, deadline: &Deadline) -> Result<(), Failure> {
    let layout = spec.layout();
    if !layout.marker().exists() {
        return Ok(());
    }
    stop_all(&layout, deadline).await?;
    if !keep_base_dir {
        return std::fs::remove_dir_all(&spec.base_dir)
            .map_err(io_error(&spec.base_dir, "remove"))
            .map_err(Failure::from);
    }
    let entries = std::fs::read_dir(&spec.base_dir)
        .map_err(io_error(&spec.base_dir, "read"))
        .map_err(Failure::from)?;
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io_error(&path, "remove")).map_err(Failure::from)?;
    }
    Ok(())
}

pub async fn destroy(spec: &GroupSpec, deadline: &Deadline) -> Result<(), Failure> {
    let layout = spec.layout();
    if !layout.marker().exists() {
        log::info!(
            "{} holds no group any more; nothing to delete",
            spec.base_dir.display()
        );
        return Ok(());
    }
    stop_all(&layout, deadline).await?;
    std::fs::remove_dir_all(&spec.base_dir)
        .map_err(io_error(&spec.base_dir, "remove"))
        .map_err(Failure::from)?;
    Ok(())
}
