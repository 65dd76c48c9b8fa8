//! `citus_cluster`: Citus membership as code.

mod catalog;
mod converge;
mod internode_auth;
mod model;
mod observe;
mod schema;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::validators::Validator;
use crate::framework::{AttrPath, Context, Diagnostics, PlannedChange, Resource, Schema};

use super::ConnectionDefaults;
use model::{port_of, timeout, ClusterSpec, NodeAddress, PreviouslyOwned};

pub struct ClusterResource {
    defaults: Arc<ConnectionDefaults>,
}

impl ClusterResource {
    pub fn new(defaults: Arc<ConnectionDefaults>) -> Self {
        ClusterResource { defaults }
    }

    /// Converges, then reads back. On failure the state is what exists now,
    /// so the next apply continues from there.
    async fn apply(
        &self,
        ctx: &Context,
        prior: Option<&Value>,
        planned: &Value,
        operation: &str,
        diags: &mut Diagnostics,
    ) -> Value {
        let spec = ClusterSpec::from_value(planned, &self.defaults);
        // Settings and internode passwords this resource set before and no
        // longer lists are reset.
        let previously_owned = PreviouslyOwned {
            settings: prior.map(|p| settings::from_value(p).into_keys().collect()).unwrap_or_default(),
            internode_roles: prior.map(internode_auth::roles).unwrap_or_default(),
        };
        if let Err(failure) =
            converge::converge(ctx, &spec, &previously_owned, timeout(planned, operation)).await
        {
            failure.report(diags);
        }
        let mut read_diags = Diagnostics::new();
        let observed = observe::observe(&spec, planned, &mut read_diags).await;
        // After a failed convergence the read's own complaints add nothing.
        if !diags.has_errors() || observed.is_none() {
            diags.extend(read_diags);
        }
        observed.unwrap_or_else(|| prior.cloned().unwrap_or(Value::Null))
    }
}

#[async_trait]
impl Resource for ClusterResource {
    fn type_name(&self) -> &'static str {
        "citus_cluster"
    }

    fn schema(&self) -> Schema {
        schema::schema()
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        settings::validate(config, diags);
        internode_auth::validate(config, diags);
        crate::citus::connection::validate_pairs(config.attr(crate::citus::connection::BLOCK_NAME), Some(&AttrPath::root(crate::citus::connection::BLOCK_NAME)), diags);
        let workers = model::named_workers(config);
        let mut names = std::collections::BTreeSet::new();
        for worker in &workers {
            if !names.insert(worker.name.as_str()) {
                diags.error_at(
                    worker.path.attr("name"),
                    "Duplicate worker name",
                    format!(
                        "{}: a worker named {:?} is declared already (in a `worker` or `worker_node` block); every worker needs its own name.",
                        worker.path.attr("name"),
                        worker.name
                    ),
                );
            }
        }
        let mut seen: BTreeMap<NodeAddress, &str> = BTreeMap::new();
        let coordinator = config.attr("coordinator");
        if let (Some(host), port) = (coordinator.attr("host").as_str(), coordinator.attr("port")) {
            if !port.is_unknown() {
                seen.insert(NodeAddress::new(host, port_of(port)), "the coordinator");
            }
        }
        for model::NamedWorker { name, path, value: worker, labelled } in &workers {
            if *labelled {
                schema::validate_worker_name().validate(&Value::string(name.clone()), path, diags);
            }
            let nodes = std::iter::once((path.clone(), *worker)).chain(
                worker
                    .attr("read_replica")
                    .as_elements()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (path.attr("read_replica").index(i), r)),
            );
            for (node_path, node) in nodes {
                let (Some(host), port) = (node.attr("host").as_str(), node.attr("port")) else {
                    continue;
                };
                if port.is_unknown() {
                    continue;
                }
                let address = NodeAddress::new(host, port_of(port));
                if let Some(other) = seen.get(&address) {
                    diags.error_at(
                        node_path.attr("host"),
                        "Duplicate node address",
                        format!("{address} is already used by {other}; every Citus node needs its own host and port."),
                    );
                } else {
                    seen.insert(address, name);
                }
            }
        }
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        change: &mut PlannedChange,
        diags: &mut Diagnostics,
    ) {
        if change.is_delete() {
            // Terraform 1.3+ plans destroys through the provider: say now what
            // apply would refuse. A warning, not an error: the same destroy may
            // first undistribute those tables (`undistribute_on_destroy` of a
            // citus_distributed_table), which the plan cannot see yet.
            let spec = ClusterSpec::from_value(&change.prior, &self.defaults);
            if spec.deregister_on_destroy && self.defaults.is_known() {
                if let Err(failure) = converge::check_deregister_possible(&spec).await {
                    diags.warning(
                        format!("Destroy will be refused: {}", failure.summary),
                        format!(
                            "{} (Unless this destroy first undistributes those tables: apply checks again.)",
                            failure.detail
                        ),
                    );
                }
            }
            return;
        }
        if change.is_create() {
            // Bad connection settings surface at plan time when they are known.
            if self.defaults.is_known() && is_known_connection(&change.planned) {
                let spec = ClusterSpec::from_value(&change.planned, &self.defaults);
                if let Err(failure) = converge::connect_coordinator(&spec).await {
                    failure.report(diags);
                }
            }
            return;
        }
        observe::plan_live_values(&change.prior, &mut change.planned);
    }

    async fn create(&self, ctx: &Context, planned: &Value, diags: &mut Diagnostics) -> Value {
        self.apply(ctx, None, planned, "create", diags).await
    }

    async fn read(&self, _ctx: &Context, state: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let spec = ClusterSpec::from_value(state, &self.defaults);
        observe::observe(&spec, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        self.apply(ctx, Some(prior), planned, "update", diags).await
    }

    async fn delete(&self, ctx: &Context, prior: &Value, diags: &mut Diagnostics) {
        let spec = ClusterSpec::from_value(prior, &self.defaults);
        if !spec.deregister_on_destroy {
            log::info!(
                "forgetting the Citus cluster at {}; its nodes stay registered",
                spec.connection.address()
            );
            return;
        }
        if let Err(failure) = converge::deregister(ctx, &spec).await {
            failure.report(diags);
        }
    }

    async fn import(&self, _ctx: &Context, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let Some(address) = NodeAddress::parse(id) else {
            diags.error(
                "Invalid import ID",
                format!("Expected the coordinator's address as host:port (or host, for port 5432), got {id:?}."),
            );
            return None;
        };
        let skeleton = observe::import_skeleton(&address);
        let spec = ClusterSpec::from_value(&skeleton, &self.defaults);
        let spec = ClusterSpec {
            connection: crate::sql::ConnectionSettings {
                host: address.host.clone(),
                port: address.port,
                ..spec.connection
            },
            ..spec
        };
        let state = observe::observe(&spec, &skeleton, diags).await;
        if state.is_none() && !diags.has_errors() {
            diags.error(
                "Nothing to import",
                format!("The server at {address} has no citus extension."),
            );
        }
        state
    }
}

fn is_known_connection(planned: &Value) -> bool {
    let coordinator = planned.attr("coordinator");
    planned.attr(crate::citus::connection::BLOCK_NAME).is_wholly_known()
        && coordinator.attr("host").is_wholly_known()
        && coordinator.attr("port").is_wholly_known()
}
