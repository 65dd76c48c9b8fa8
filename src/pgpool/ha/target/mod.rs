//! Where a group runs, behind one interface: the resource (`ha/mod.rs`)
//! works with a `GroupTarget` and never with processes or files itself.
//! Only `local` (every process on the machine running Terraform) implements
//! it yet; `kubernetes` renders the group's objects from the same
//! configuration (`render`) and will implement the same trait.
//!
//! An apply is three steps (see [`apply`]), each picking up what an
//! interrupted earlier apply left: converge (files, the primary, each
//! standby, surplus nodes, repmgrd, pgpool running), restart (restart-only
//! parameters put into effect), settle (pgpool agrees with repmgr; the
//! configuration is saved for import).

mod failure;
pub mod kubernetes;
pub mod local;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Context, Diagnostics};

use super::live::GroupLive;
use super::model::GroupSpec;

pub use failure::{check_stop, wait_failure, Deadline, Failure};

#[async_trait]
pub trait GroupTarget: Send + Sync {
    /// Whether the target holds the group `spec` names (made by this
    /// provider, not necessarily healthy).
    async fn holds_group(&self, spec: &GroupSpec) -> bool;

    /// The slots to observe: the ones `spec` asks for, then any others the
    /// target still has (nodes beyond `standbys` show as drift).
    async fn slots(&self, spec: &GroupSpec) -> Vec<usize>;

    /// Reads the nodes in `slots` and pgpool. Never fails: a node that does
    /// not answer is down in the result.
    async fn observe(&self, spec: &GroupSpec, slots: &[usize]) -> GroupLive;

    /// pgpool's health checks are off because an apply that restarted nodes
    /// did not get to turn them on again.
    async fn health_checks_off(&self, spec: &GroupSpec) -> bool;

    /// The first step of an apply: every node of `spec` running and
    /// replicating, surplus nodes removed, repmgrd and pgpool running.
    /// Returns the primary's slot. `spec.port_base` must be known.
    async fn converge(&self, ctx: &Context, spec: &GroupSpec, deadline: &Deadline) -> Result<usize, Failure>;

    /// Restart-only parameters put into effect on the nodes that report one
    /// pending, without a failover.
    async fn restart(&self, ctx: &Context, spec: &GroupSpec, primary: usize, deadline: &Deadline) -> Result<(), Failure>;

    /// The last step: pgpool agrees with repmgr on every node, and the
    /// configuration the group converged to is saved for import.
    async fn settle(&self, ctx: &Context, spec: &GroupSpec, primary: usize, deadline: &Deadline) -> Result<GroupLive, Failure>;

    /// Stops every process of the group and deletes it; nothing to do when
    /// the target holds no group there.
    async fn destroy(&self, spec: &GroupSpec, deadline: &Deadline) -> Result<(), Failure>;

    /// After a failed create of a new group: stops what it started and
    /// removes what it made; `keep_base_dir` when the place existed before.
    async fn discard_created(&self, spec: &GroupSpec, keep_base_dir: bool, deadline: &Deadline) -> Result<(), Failure>;

    /// The value to import for `id`, before the live group is observed;
    /// `None` with an error diagnostic when there is none.
    async fn restore(&self, id: &str, diags: &mut Diagnostics) -> Option<Value>;
}

/// Brings the live group to `spec`: the same steps serve create, update
/// and repair.
pub async fn apply(target: &dyn GroupTarget, ctx: &Context, spec: &GroupSpec, deadline: &Deadline) -> Result<GroupLive, Failure> {
    let primary = target.converge(ctx, spec, deadline).await?;
    target.restart(ctx, spec, primary, deadline).await?;
    target.settle(ctx, spec, primary, deadline).await
}
