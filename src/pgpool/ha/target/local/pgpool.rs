//! pgpool's view made to agree with repmgr's: the primary promoted in
//! pgpool, every healthy standby attached, through PCP.

use std::path::Path;
use std::time::Duration;

use crate::framework::{poll_until, Context};
use crate::pgpool::ha::layout::{node_name, Layout};
use crate::pgpool::ha::live::{GroupLive, STATUS_DETACHED, STATUS_UP};
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::render::{self, PCP_BINDIR};
use crate::pgpool::ha::target::{wait_failure, Deadline, Failure};

use super::host::{run, LocalError};
use super::observe;
use super::tools::os;

async fn pcp(
    layout: &Layout,
    tool: &str,
    slot: usize,
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let p = layout.pgpool();
    let (sock, port, id) = (p.socket_dir(), p.pcp_port.to_string(), slot.to_string());
    let pass = p.pcppass();
    // pgpool opens its PCP socket only once it has found the primary, a
    // moment after it answers SQL.
    let socket = sock.join(format!(".s.PGSQL.{port}"));
    let until = std::time::Instant::now() + deadline.command().min(Duration::from_secs(30));
    while !socket.exists() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run(
        &Path::new(PCP_BINDIR).join(tool),
        &[
            os("-h"),
            sock.as_os_str(),
            os("-p"),
            os(&port),
            os("-U"),
            os(render::PCP_USER),
            os("-w"),
            os("-n"),
            os(&id),
        ],
        &[("PCPPASSFILE", pass.as_os_str())],
        deadline.command(),
    )
    .await
}

/// Makes pgpool agree with repmgr: the primary promoted in pgpool, every
/// healthy node attached. Waits until SHOW POOL_NODES shows it.
pub async fn reconcile_pgpool(
    ctx: &Context,
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    deadline: &Deadline,
) -> Result<GroupLive, Failure> {
    let slots: Vec<usize> = spec.slots().collect();
    let pgpool = layout.pgpool();
    let pgpool = &pgpool;
    poll_until(
        &ctx.stop,
        deadline.left().min(Duration::from_secs(60)),
        Duration::from_millis(300),
        "pgpool to answer",
        || async move { Ok::<_, String>(observe::pool_nodes(pgpool).await) },
    )
    .await
    .map_err(|e| wait_failure("pgpool to answer on its port", e))?;

    // Each PCP action once per apply; then pgpool gets time to act on it.
    let acted = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let what = "pgpool to agree with repmgr (every node attached, the same primary)";
    let live = poll_until(
        &ctx.stop,
        deadline.left().min(Duration::from_secs(120)),
        Duration::from_millis(500),
        what,
        || {
            let slots = slots.clone();
            let acted = &acted;
            let first =
                |what: &'static str, slot: usize| acted.lock().expect("lock").insert((what, slot));
            async move {
                let live = observe::observe(layout, &slots).await;
                if live.primary != Some(primary) {
                    return Err(format!(
                        "repmgr's primary changed to {:?} while converging",
                        live.primary.map(node_name)
                    ));
                }
                let Some(pool) = &live.pool_nodes else {
                    return Ok(None);
                };
                let mut done = true;
                if live.pgpool_primary() != Some(primary) {
                    done = false;
                    let attached = pool.iter().any(|p| p.id == primary && p.attached());
                    if !attached && first("attach", primary) {
                        log::info!("attaching {} in pgpool", node_name(primary));
                        pcp(layout, "pcp_attach_node", primary, deadline)
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if attached && first("promote", primary) {
                        log::info!("promoting {} in pgpool", node_name(primary));
                        pcp(layout, "pcp_promote_node", primary, deadline)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                for &slot in &slots {
                    let healthy_standby =
                        slot != primary && live.status(slot) == STATUS_DETACHED;
                    if healthy_standby {
                        done = false;
                        if first("attach", slot) {
                            log::info!("attaching {} in pgpool", node_name(slot));
                            pcp(layout, "pcp_attach_node", slot, deadline)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    } else if live.status(slot) != STATUS_UP && slot != primary {
                        done = false;
                    }
                }
                Ok(done.then_some(live))
            }
        },
    )
    .await
    .map_err(|e| wait_failure(what, e))?;
    Ok(live)
}
