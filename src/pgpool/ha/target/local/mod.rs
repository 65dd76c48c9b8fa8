//! The `local` target: every process of a group on the machine running
//! Terraform, under `base_dir`, as the service account, detached from the
//! provider (tokio processes, see `host`).
//!
//! Inside, dependence runs one way, from the machine up to the steps:
//! `host` (commands, files, pids, locks) -> `failure` (its errors as a
//! target's) -> `observe` (reading the group) -> `tools` (pg_ctl, repmgr,
//! repmgrd, pgpool) -> `files` -> `replication` -> `bootstrap`, `clone` ->
//! `rejoin` -> `restart`, `pgpool` -> `converge`; `destroy` and `import`
//! beside them; `plan` holds the plan-time checks of this machine.

mod bootstrap;
mod clone;
mod converge;
mod destroy;
mod failure;
mod files;
mod host;
mod import;
mod observe;
mod pgpool;
pub mod plan;
mod rejoin;
mod replication;
mod restart;
mod tools;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Context, Diagnostics};
use crate::pgpool::ha::live::GroupLive;
use crate::pgpool::ha::model::GroupSpec;

use super::{Deadline, Failure, GroupTarget};
use failure::step;

pub struct LocalTarget;

#[async_trait]
impl GroupTarget for LocalTarget {
    async fn holds_group(&self, spec: &GroupSpec) -> bool {
        spec.layout().marker().exists()
    }

    async fn slots(&self, spec: &GroupSpec) -> Vec<usize> {
        let mut slots: Vec<usize> = spec.slots().collect();
        for s in observe::slots_on_disk(&spec.layout()) {
            if !slots.contains(&s) {
                slots.push(s);
            }
        }
        slots
    }

    async fn observe(&self, spec: &GroupSpec, slots: &[usize]) -> GroupLive {
        observe::observe(&spec.layout(), slots).await
    }

    /// pgpool.conf written with `health_check_period = 0` (see `restart`)
    /// where the plan has checks on.
    async fn health_checks_off(&self, spec: &GroupSpec) -> bool {
        spec.pgpool.health_check_period != 0
            && std::fs::read_to_string(spec.layout().pgpool().conf()).is_ok_and(|conf| {
                conf.lines().any(|l| {
                    l.split_once('=').is_some_and(|(k, v)| k.trim() == "health_check_period" && v.trim() == "0")
                })
            })
    }

    async fn converge(&self, ctx: &Context, spec: &GroupSpec, deadline: &Deadline) -> Result<usize, Failure> {
        converge::converge(ctx, spec, deadline).await
    }

    async fn restart(&self, ctx: &Context, spec: &GroupSpec, primary: usize, deadline: &Deadline) -> Result<(), Failure> {
        restart::restart_pending(ctx, spec, &spec.layout(), primary, deadline).await
    }

    async fn settle(&self, ctx: &Context, spec: &GroupSpec, primary: usize, deadline: &Deadline) -> Result<GroupLive, Failure> {
        let live = pgpool::reconcile_pgpool(ctx, spec, &spec.layout(), primary, deadline).await?;
        // Only a configuration the group converged to is what import reads back.
        import::save(spec).map_err(step("save the configuration for import"))?;
        Ok(live)
    }

    async fn destroy(&self, spec: &GroupSpec, deadline: &Deadline) -> Result<(), Failure> {
        destroy::destroy(spec, deadline).await
    }

    async fn discard_created(&self, spec: &GroupSpec, keep_base_dir: bool, deadline: &Deadline) -> Result<(), Failure> {
        destroy::discard_created(spec, keep_base_dir, deadline).await
    }

    async fn restore(&self, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        import::restore(id, diags)
    }
}
