//! Whether a standby follows the primary: streaming from its port, on its
//! current timeline.

use std::time::{Duration, Instant};

use crate::framework::{poll_until, Context};
use crate::pgpool::ha::layout::Layout;

use super::observe::{self, connect_node};

/// What a standby's WAL receiver is doing, seen against the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replication {
    /// Streaming, from the primary's port.
    streaming_from_primary: bool,
    /// Whether the WAL it last received is on the primary's current timeline.
    on_primary_timeline: bool,
}

impl Replication {
    fn follows(&self) -> bool {
        self.streaming_from_primary && self.on_primary_timeline
    }
}

/// `None` while the node has no WAL receiver (or either node does not answer).
async fn replication_state(layout: &Layout, slot: usize, primary: usize) -> Option<Replication> {
    let wanted = layout.node(primary).port;
    let (standby, source) = (connect_node(&layout.node(slot)).await?, connect_node(&layout.node(primary)).await?);
    let rows = observe::simple_rows(
        &standby,
        "SELECT status, sender_port::text AS p, received_tli::text AS tli FROM pg_catalog.pg_stat_wal_receiver",
    )
    .await
    .ok()?;
    let timeline = observe::simple_rows(&source, observe::CURRENT_TIMELINE_QUERY).await.ok()?;
    let row = rows.first()?;
    let get = |r: &std::collections::BTreeMap<String, Option<String>>, k: &str| r.get(k).cloned().flatten();
    let primary_timeline = timeline.first().and_then(|t| get(t, "timeline"));
    Some(Replication {
        streaming_from_primary: get(row, "status").as_deref() == Some("streaming")
            && get(row, "p").and_then(|p| p.parse::<u16>().ok()) == Some(wanted),
        on_primary_timeline: get(row, "tli").is_some() && get(row, "tli") == primary_timeline,
    })
}

/// Waits until the node streams from the primary, on the primary's timeline
/// (true), or `within` passes (false). The timeline matters: a node with WAL
/// past the promotion restarted as a standby streams the old timeline up to
/// the fork again and again, and never follows.
pub async fn streams_from(
    ctx: &Context,
    layout: &Layout,
    slot: usize,
    primary: usize,
    within: Duration,
) -> bool {
    poll_until(&ctx.stop, within, Duration::from_millis(300), "replication", || async move {
        Ok::<_, String>(replication_state(layout, slot, primary).await.is_some_and(|r| r.follows()).then_some(()))
    })
    .await
    .is_ok()
}

/// After a rejoin: true once the node follows the primary; false when its WAL
/// receiver stays on an old timeline for `DIVERGED_AFTER` (the node has WAL
/// past the promotion: it streams the old timeline to the fork, again and
/// again, and never follows), or nothing happens within `within`.
pub async fn follows_after_rejoin(ctx: &Context, layout: &Layout, slot: usize, primary: usize, within: Duration) -> bool {
    const DIVERGED_AFTER: Duration = Duration::from_secs(15);
    let started = Instant::now();
    let mut old_timeline_since: Option<Instant> = None;
    while started.elapsed() < within && !ctx.stop.is_stopped() {
        match replication_state(layout, slot, primary).await {
            Some(r) if r.follows() => return true,
            Some(r) if !r.on_primary_timeline => {
                if old_timeline_since.get_or_insert_with(Instant::now).elapsed() >= DIVERGED_AFTER {
                    return false;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}
