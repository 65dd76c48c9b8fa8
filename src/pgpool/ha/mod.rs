//! `pgpool_ha`: one highly available PostgreSQL node group (repmgr behind
//! Pgpool-II). Only the `local` target exists yet.
//!
//! Dependence runs one way, each module using only those before it:
//!
//! ```text
//! defaults, layout        every default; limits, names, paths and ports of a group
//!   -> schema             attributes, their defaults and validators
//!   -> configuration      what import restores, found by walking the schema
//!   -> model              the typed group a planned value asks for (GroupSpec)
//!   -> render             every configuration file and script, shared by all targets
//!   -> setting_values,    plan-time checks of postgresql_settings against
//!      parameters         the installed PostgreSQL
//!   -> live               a group as observed (GroupLive, node statuses)
//!   -> target             the GroupTarget trait (observe, converge, restart,
//!                         settle, destroy, restore), Failure, Deadline
//!   -> target::local      the local target (its own order in its module doc)
//!   -> mod (this file)    the resource: plan, state, and which target runs it
//! ```

mod configuration;
mod defaults;
mod layout;
mod live;
mod model;
mod parameters;
mod render;
mod schema;
mod setting_values;
mod target;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{AttrPath, Context, Diagnostics, PlannedChange, Resource, Schema};
use crate::kubernetes::connection::Connection;

use layout::{Layout, HOST, PORTS_PER_GROUP};
use live::{GroupLive, STATUS_UP};
use model::{timeout, GroupSpec, TargetKind};
use target::local::{plan, LocalTarget};
use target::{Deadline, Failure, GroupTarget};

/// The Kubernetes objects of the group a resource value describes (with
/// `target = "kubernetes"`), as the JSON server-side apply sends: for tests
/// and tools until the target applies them itself. `pcp_password` is the
/// group's PCP password.
pub fn kubernetes_objects(value: &Value, pcp_password: &str) -> Result<Vec<serde_json::Value>, String> {
    let spec = GroupSpec::from_value(value);
    if spec.target != TargetKind::Kubernetes {
        return Err("the group's target is not \"kubernetes\"".into());
    }
    Ok(target::kubernetes::render(&spec, &crate::sql::Secret::new(pcp_password))?.objects)
}

pub struct HaResource {
    /// The provider's Kubernetes connection: made into a client only when a
    /// group of the kubernetes target needs the API server.
    #[allow(dead_code)] // Used by the kubernetes target once it converges (issue 9).
    connection: Arc<Connection>,
}

/// Where groups run. Only `local` exists (the schema's `target` allows
/// nothing else); a second target is chosen here by that attribute.
fn group_target() -> &'static dyn GroupTarget {
    &LocalTarget
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The state after an apply or a read: what the configuration said, with
/// every computed attribute from the live group.
async fn to_state(target: &dyn GroupTarget, base: &Value, spec: &GroupSpec, live: &GroupLive) -> Value {
    let layout = spec.layout();
    let mut slots: Vec<usize> = spec.slots().collect();
    // Nodes beyond `standbys` still on disk are listed, so they show as drift.
    for (slot, node) in &live.nodes {
        if !slots.contains(slot) && (node.running || node.has_data) {
            slots.push(*slot);
        }
    }
    let nodes = slots
        .iter()
        .map(|&slot| {
            let node = layout.node(slot);
            object(vec![
                ("name", Value::string(node.name())),
                ("host", Value::string(HOST)),
                ("port", Value::int(node.port as i64)),
                ("role", Value::string(live.role(slot))),
                ("status", Value::string(live.status(slot))),
                (
                    "replication_delay_bytes",
                    Value::int(live::delay_of(live, slot)),
                ),
            ])
        })
        .collect();
    let mut state = base.clone();
    let fields = state
        .as_object_mut()
        .expect("a resource value is an object");
    let port_base = spec
        .port_base
        .map(|p| Value::int(p as i64))
        .unwrap_or(Value::Null);
    fields.insert(
        "id".into(),
        Value::string(spec.base_dir.display().to_string()),
    );
    fields.insert("port_base".into(), port_base);
    fields.insert("endpoint_host".into(), Value::string(HOST));
    fields.insert(
        "endpoint_port".into(),
        Value::int(layout.pgpool().port as i64),
    );
    fields.insert(
        "primary".into(),
        Value::opt_string(live.primary.map(layout::node_name)),
    );
    // While no node is primary, the last known primary's address stays: a
    // Citus worker registered by it is not planned away meanwhile.
    if let Some(primary) = live.primary {
        fields.insert("primary_host".into(), Value::string(HOST));
        fields.insert(
            "primary_port".into(),
            Value::int(layout.node(primary).port as i64),
        );
    }
    fields.insert("pgpool_status".into(), Value::string(pgpool_status(target.health_checks_off(spec).await, live)));
    fields.insert("nodes".into(), Value::List(nodes));
    // Unknowns of the plan that apply did not settle become null.
    for value in fields.values_mut() {
        if !value.is_wholly_known() {
            *value = Value::Null;
        }
    }
    state
}

/// pgpool as the schema documents it: `checks_off` when an apply that
/// restarted nodes did not get to turn its health checks on again.
fn pgpool_status(checks_off: bool, live: &GroupLive) -> &'static str {
    match live.pgpool_status() {
        "up" if checks_off => "checks_off",
        other => other,
    }
}

/// Why the group in `state` needs an apply to be healthy again; empty when it is.
fn repairs(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let nodes = state.attr("nodes").as_elements().unwrap_or_default();
    for node in nodes {
        let status = node.attr("status").as_str().unwrap_or_default();
        if status != STATUS_UP {
            let name = node.attr("name").as_str().unwrap_or_default();
            let action = match status {
                live::STATUS_FENCED => {
                    "an old primary that came back: apply rewinds it and rejoins it as a standby"
                }
                live::STATUS_DETACHED => "detached in pgpool: apply attaches it again",
                live::STATUS_NOT_REPLICATING => {
                    "not replicating from the primary: apply rejoins or re-clones it"
                }
                live::STATUS_UNMONITORED => {
                    "its repmgrd is not running, or paused by an apply that did not finish: apply starts or unpauses it"
                }
                _ => "down: apply starts it, or rejoins or re-clones it",
            };
            out.push(format!("{name} is {status}, {action}"));
        }
    }
    let wanted = model::standbys(state) + 1;
    if nodes.len() > wanted {
        out.push(format!(
            "{} nodes exist where {wanted} are configured: apply removes the others",
            nodes.len()
        ));
    }
    match state.attr("pgpool_status").as_str() {
        Some("up") | None => {}
        Some("wrong_primary") => out.push(
            "pgpool's primary is not repmgr's: apply promotes repmgr's primary in pgpool".into(),
        ),
        Some("checks_off") => out.push(
            "pgpool's health checks are off (an apply that restarted nodes did not finish): apply turns them on".into(),
        ),
        Some(other) => out.push(format!("pgpool is {other}: apply starts it")),
    }
    out
}

/// The one message for a destroy that deletion protection stops, at plan or apply.
fn refuse_protected_destroy(spec: &GroupSpec, diags: &mut Diagnostics) {
    diags.error_at(
        AttrPath::root("deletion_protection"),
        "Deletion protection is on",
        format!(
            "The group {:?} in {} was not destroyed: its processes keep running and its data stays. \
             Set deletion_protection = false and apply, then destroy.",
            spec.name,
            spec.base_dir.display()
        ),
    );
}

/// Until the kubernetes target converges, a plan with it ends here, after
/// every attribute was validated: never a no-op that claims success.
fn refuse_kubernetes_apply(diags: &mut Diagnostics) {
    diags.error_at(
        AttrPath::root("target"),
        "The kubernetes target cannot apply yet",
        "pgpool_ha's kubernetes target is in progress: its settings are validated (the configuration above is \
         valid) and its Kubernetes objects can be rendered, but creating, changing or reading a group in a \
         cluster is not implemented yet, so nothing was planned. Use target = \"local\" meanwhile.",
    );
}

impl HaResource {
    pub fn new(connection: Arc<Connection>) -> Self {
        HaResource { connection }
    }

    async fn apply(
        &self,
        ctx: &Context,
        planned: &Value,
        operation: &str,
        diags: &mut Diagnostics,
    ) -> Result<Value, (Failure, Option<Value>)> {
        let target = group_target();
        let spec = GroupSpec::from_value(planned);
        let deadline = Deadline::new(timeout(planned, operation));
        match target::apply(target, ctx, &spec, &deadline).await {
            Ok(live) => Ok(to_state(target, planned, &spec, &live).await),
            Err(failure) => {
                let slots: Vec<usize> = spec.slots().collect();
                let live = target.observe(&spec, &slots).await;
                let _ = diags;
                Err((failure, Some(to_state(target, planned, &spec, &live).await)))
            }
        }
    }
}

#[async_trait]
impl Resource for HaResource {
    fn type_name(&self) -> &'static str {
        "pgpool_ha"
    }

    fn schema(&self) -> Schema {
        schema::schema()
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        schema::validate_target(config, diags);
        for (block, name) in [(config, "superuser_password"), (config.attr("citus"), "password")] {
            let write_only = format!("{name}_wo");
            if !block.attr(name).is_null() && !block.attr(&write_only).is_null() {
                let path = if name == "password" {
                    AttrPath::root("citus").attr(&write_only)
                } else {
                    AttrPath::root(&write_only)
                };
                diags.error_at(
                    path,
                    "Conflicting passwords",
                    format!("Set either `{name}` or its write-only form `{write_only}`, not both."),
                );
            }
        }
        let sync = config.attr("synchronous_replication").as_bool() == Some(true);
        if sync && config.attr("standbys").as_i64() == Some(0) {
            diags.error_at(
                AttrPath::root("synchronous_replication"),
                "Synchronous replication needs a standby",
                "With `standbys = 0` no commit could ever be acknowledged. Add a standby or turn synchronous_replication off.",
            );
        }
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        change: &mut PlannedChange,
        diags: &mut Diagnostics,
    ) {
        if change.is_delete() {
            // Terraform 1.3+ plans destroys through the provider (plan_destroy):
            // the refusal apply would give is given here, before anything runs.
            let spec = GroupSpec::from_value(&change.prior);
            if spec.deletion_protection {
                refuse_protected_destroy(&spec, diags);
            }
            return;
        }
        let spec = GroupSpec::from_value(&change.planned);
        if spec.target == TargetKind::Kubernetes {
            // What can be checked without a cluster: the objects render.
            if change.planned.is_wholly_known() {
                if let Err(e) = target::kubernetes::render(&spec, &crate::sql::Secret::new("(chosen at apply)")) {
                    diags.error_at(AttrPath::root("kubernetes"), "Cannot render the group's Kubernetes objects", e);
                }
            }
            refuse_kubernetes_apply(diags);
            return;
        }
        if change.planned.attr("postgresql_settings").is_wholly_known() {
            parameters::check(&change.prior, &change.planned, diags);
        }
        let planned = &mut change.planned;
        if change.prior.is_null() {
            if let Some(dir) = planned.attr("base_dir").as_str() {
                plan::check_base_dir(Path::new(dir), diags);
            }
            if let Some(base) = planned.attr("port_base").as_i64().and_then(|b| u16::try_from(b).ok()) {
                if let Err(port) = plan::ports_free(base) {
                    diags.error_at(
                        AttrPath::root("port_base"),
                        "Port in use",
                        format!("Port {port} (of the {PORTS_PER_GROUP} from port_base = {base}) is already in use on {HOST}."),
                    );
                }
            }
            let fields = planned.as_object_mut().expect("object");
            fields.insert("endpoint_host".into(), Value::string(HOST));
            let endpoint = fields
                .get("port_base")
                .cloned()
                .filter(|v| v.as_i64().is_some())
                .unwrap_or(Value::Unknown);
            fields.insert("endpoint_port".into(), endpoint);
            fields.insert(
                "id".into(),
                fields.get("base_dir").cloned().unwrap_or(Value::Unknown),
            );
            // A new group's first primary is slot 0.
            fields.insert("primary_host".into(), Value::string(HOST));
            let first_primary = fields
                .get("port_base")
                .and_then(Value::as_i64)
                .map(|base| Value::int(Layout::new("", base as u16).node(0).port as i64))
                .unwrap_or(Value::Unknown);
            fields.insert("primary_port".into(), first_primary);
            return;
        }
        // Apply keeps the live primary (a promotion during apply fails it), so
        // the primary's address is known: dependents such as a Citus worker's
        // address are not planned to change. Without a primary, apply picks one.
        let has_primary = change.prior.attr("primary").as_str().is_some();
        for name in ["primary_host", "primary_port"] {
            let prior = change.prior.attr(name);
            let value = if has_primary && !prior.is_null() {
                prior.clone()
            } else {
                Value::Unknown
            };
            planned
                .as_object_mut()
                .expect("object")
                .insert(name.into(), value);
        }
        let needed = repairs(&change.prior);
        if !needed.is_empty() {
            for reason in &needed {
                diags.warning("Group needs repair", reason.clone());
            }
            let fields = planned.as_object_mut().expect("object");
            for name in ["nodes", "primary", "pgpool_status"] {
                fields.insert(name.into(), Value::Unknown);
            }
        }
    }

    async fn create(&self, ctx: &Context, planned: &Value, diags: &mut Diagnostics) -> Value {
        if GroupSpec::from_value(planned).target == TargetKind::Kubernetes {
            refuse_kubernetes_apply(diags);
            return Value::Null;
        }
        let mut planned = planned.clone();
        if planned.attr("port_base").as_i64().is_none() {
            let Some(base) = plan::choose_port_base() else {
                diags.error_at(AttrPath::root("port_base"), "No free ports", format!("Found no {PORTS_PER_GROUP} consecutive free ports on {HOST}; set port_base."));
                return Value::Null;
            };
            planned
                .as_object_mut()
                .expect("object")
                .insert("port_base".into(), Value::int(base as i64));
        }
        // What was there before: a failed create removes only what it made.
        let base_dir = planned.attr("base_dir").as_str().map(std::path::PathBuf::from);
        let base_existed = base_dir.as_ref().is_some_and(|b| b.exists());
        let adopted = base_dir.as_ref().is_some_and(|b| b.join(layout::MARKER).exists());
        match self.apply(ctx, &planned, "create", diags).await {
            Ok(state) => state,
            Err((failure, state)) if failure.is_stopped() => {
                // Interrupted: what runs keeps running (detached) and is in state.
                failure.report(diags);
                state.unwrap_or(Value::Null)
            }
            Err((failure, _)) if adopted => {
                // The group was there before this create: none of it is ours to remove.
                diags.warning(
                    "The group found in base_dir is left as it was",
                    format!(
                        "{} held a pgpool_ha group before this create (its marker file), which the create adopted. \
                         The failed create removes none of it: its data stays, and nodes that run keep running; configuration files \
                         it rewrote are written again by the next apply. Fix the cause and apply again (the group is adopted again), \
                         or `terraform import` it.",
                        base_dir.as_ref().map(|b| b.display().to_string()).unwrap_or_default()
                    ),
                );
                failure.report(diags);
                Value::Null
            }
            Err((failure, _)) => {
                // A failed create of a new group leaves nothing half-started behind.
                let spec = GroupSpec::from_value(&planned);
                let deadline = Deadline::new(std::time::Duration::from_secs(120));
                if let Err(e) = group_target().discard_created(&spec, base_existed, &deadline).await {
                    diags.warning(
                        e.summary,
                        format!("While cleaning up after the failed create: {}", e.detail),
                    );
                }
                failure.report(diags);
                Value::Null
            }
        }
    }

    async fn read(&self, _ctx: &Context, state: &Value, _diags: &mut Diagnostics) -> Option<Value> {
        let target = group_target();
        let spec = GroupSpec::from_value(state);
        spec.port_base?;
        if !target.holds_group(&spec).await {
            return None;
        }
        let slots = target.slots(&spec).await;
        let live = target.observe(&spec, &slots).await;
        Some(to_state(target, state, &spec, &live).await)
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        if GroupSpec::from_value(planned).target == TargetKind::Kubernetes {
            refuse_kubernetes_apply(diags);
            return prior.clone();
        }
        // The plan promised the primary's address (dependents such as a Citus
        // worker were planned with it). A failover since then would make
        // apply's result differ from the plan: stop before changing anything.
        if let Some(planned_port) = planned.attr("primary_port").as_i64() {
            let target = group_target();
            let spec = GroupSpec::from_value(prior);
            let layout = spec.layout();
            let slots = target.slots(&spec).await;
            let live = target.observe(&spec, &slots).await;
            if let Some(primary) = live.primary {
                let port = layout.node(primary).port as i64;
                if port != planned_port {
                    diags.error_at(
                        AttrPath::root("primary_port"),
                        "The primary changed since the plan; plan again",
                        format!(
                            "This plan was made while the primary's port was {planned_port}; the group's primary is now {} (port {port}): \
                             a failover happened in between. Nothing was changed. Run `terraform plan` again and apply that plan, \
                             so that what depends on primary_port (a Citus worker's address) is planned with the new primary.",
                            layout::node_name(primary)
                        ),
                    );
                    return to_state(target, prior, &spec, &live).await;
                }
            }
        }
        match self.apply(ctx, planned, "update", diags).await {
            Ok(state) => state,
            Err((failure, state)) => {
                failure.report(diags);
                state.unwrap_or_else(|| prior.clone())
            }
        }
    }

    async fn delete(&self, _ctx: &Context, prior: &Value, diags: &mut Diagnostics) {
        let spec = GroupSpec::from_value(prior);
        if spec.deletion_protection {
            refuse_protected_destroy(&spec, diags);
            return;
        }
        let deadline = Deadline::new(timeout(prior, "delete"));
        if let Err(failure) = group_target().destroy(&spec, &deadline).await {
            failure.report(diags);
        }
    }

    /// The ID is the base directory; see `target/local/import.rs` for what is restored.
    async fn import(&self, ctx: &Context, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let value = group_target().restore(id, diags).await?;
        let state = self.read(ctx, &value, diags).await;
        if state.is_none() {
            diags.error("No such group", format!("No pgpool_ha group could be read in {id}."));
        }
        state
    }
}
