//! A group as it was observed: each node's state, pgpool's view, and the
//! node statuses the schema documents. Whatever target observed it.

use std::collections::BTreeMap;

use super::layout::node_name;

pub const STATUS_UP: &str = "up";
pub const STATUS_DOWN: &str = "down";
pub const STATUS_DETACHED: &str = "detached";
pub const STATUS_NOT_REPLICATING: &str = "not_replicating";
pub const STATUS_FENCED: &str = "fenced";
/// Running and replicating, but its repmgrd is not running, or paused by an
/// apply that did not finish: it would not fail over.
pub const STATUS_UNMONITORED: &str = "unmonitored";

/// What one node is doing now.
#[derive(Debug, Clone, Default)]
pub struct NodeLive {
    pub slot: usize,
    pub port: u16,
    pub has_data: bool,
    pub running: bool,
    /// Answered SQL: whether it is in recovery.
    pub in_recovery: Option<bool>,
    /// On a node out of recovery: its current timeline.
    pub timeline: Option<i64>,
    /// On a standby: the port of the server it streams from.
    pub upstream_port: Option<u16>,
    /// On a standby: the timeline of the WAL it last received. A standby that
    /// streams the old timeline up to the fork and no further (an old primary
    /// with WAL past the promotion, restarted as a standby) is not replicating.
    pub received_timeline: Option<i64>,
    pub repmgrd_running: bool,
}

/// One row of `SHOW POOL_NODES`.
#[derive(Debug, Clone)]
pub struct PoolNode {
    pub id: usize,
    /// `up`, `waiting`, `down` or `unused`.
    pub status: String,
    /// `primary` or `standby`, as pgpool sees it.
    pub role: String,
}

impl PoolNode {
    pub fn attached(&self) -> bool {
        matches!(self.status.as_str(), "up" | "waiting")
    }
}

#[derive(Debug, Clone, Default)]
pub struct GroupLive {
    pub nodes: BTreeMap<usize, NodeLive>,
    /// The node that is primary: out of recovery on the highest timeline.
    pub primary: Option<usize>,
    /// `None` when pgpool did not answer.
    pub pool_nodes: Option<Vec<PoolNode>>,
    /// Replay lag in bytes per node name, from the primary.
    pub delays: BTreeMap<String, i64>,
    /// An apply paused repmgrd and did not get to unpause it: no failover
    /// would happen.
    pub repmgrd_paused: bool,
}

impl GroupLive {
    /// The node status the schema documents.
    pub fn status(&self, slot: usize) -> &'static str {
        let Some(node) = self.nodes.get(&slot) else {
            return STATUS_DOWN;
        };
        if !node.running || node.in_recovery.is_none() {
            return STATUS_DOWN;
        }
        if node.in_recovery == Some(false) && self.primary != Some(slot) {
            return STATUS_FENCED;
        }
        if node.in_recovery == Some(true) {
            let primary_port = self
                .primary
                .and_then(|p| self.nodes.get(&p))
                .map(|p| p.port);
            if primary_port.is_none() || node.upstream_port != primary_port {
                return STATUS_NOT_REPLICATING;
            }
            let primary_timeline = self.primary.and_then(|p| self.nodes.get(&p)).and_then(|p| p.timeline);
            if let (Some(received), Some(current)) = (node.received_timeline, primary_timeline) {
                if received != current {
                    return STATUS_NOT_REPLICATING;
                }
            }
        }
        if let Some(pool) = &self.pool_nodes {
            if !pool.iter().any(|p| p.id == slot && p.attached()) {
                return STATUS_DETACHED;
            }
        }
        if !node.repmgrd_running || self.repmgrd_paused {
            return STATUS_UNMONITORED;
        }
        STATUS_UP
    }

    pub fn role(&self, slot: usize) -> &'static str {
        match self.nodes.get(&slot).and_then(|n| n.in_recovery) {
            _ if self.primary == Some(slot) => "primary",
            Some(true) => "standby",
            _ => "unknown",
        }
    }

    /// pgpool's primary, when it has one attached.
    pub fn pgpool_primary(&self) -> Option<usize> {
        self.pool_nodes
            .as_ref()?
            .iter()
            .find(|p| p.role == "primary" && p.attached())
            .map(|p| p.id)
    }

    /// `up` when pgpool answers and agrees with repmgr on the primary.
    pub fn pgpool_status(&self) -> &'static str {
        match (&self.pool_nodes, self.pgpool_primary(), self.primary) {
            (None, _, _) => "down",
            (Some(_), p, q) if p == q => "up",
            _ => "wrong_primary",
        }
    }
}

/// A delay to report: replay lag for standbys, 0 for the primary.
pub fn delay_of(live: &GroupLive, slot: usize) -> i64 {
    if live.primary == Some(slot) {
        return 0;
    }
    live.delays.get(&node_name(slot)).copied().unwrap_or(0)
}
