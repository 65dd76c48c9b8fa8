//! Reading a Citus cluster back into `citus_cluster` state, and the parts of
//! a plan that depend on what was read.
//!
//! A read costs a fixed number of coordinator queries plus one connection
//! probe per node, made concurrently. A worker that is down is reported in
//! its `reachable` attribute; it never fails the read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::future::join_all;

use crate::cty::Value;
use crate::framework::Diagnostics;
use crate::sql::ConnectionSettings;

use super::super::rebalance;
use super::catalog::{self, DistNode};
use super::converge::connect_coordinator;
use super::model::{named_workers, rebalance_spec, ClusterSpec, NodeAddress};
use super::schema::{WORKER_BLOCK, WORKER_NODE_BLOCK};

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn or_default(value: &Value, default: Value) -> Value {
    if value.is_null() || value.is_unknown() {
        default
    } else {
        value.clone()
    }
}

/// Config-only values survive a read as they were; unknowns (from a plan being
/// applied) become null.
fn kept(value: &Value) -> Value {
    if value.is_wholly_known() {
        value.clone()
    } else {
        Value::Null
    }
}

/// The state an import starts from: only the coordinator's address.
pub fn import_skeleton(address: &NodeAddress) -> Value {
    object(vec![
        ("id", Value::Null),
        ("deregister_on_destroy", Value::Bool(false)),
        ("update_extension", Value::Bool(false)),
        ("settings", Value::Null),
        (super::internode_auth::BLOCK_NAME, Value::Map(BTreeMap::new())),
        ("citus_version", Value::Null),
        ("pending_rebalance_moves", Value::Null),
        ("pending_rebalance_bytes", Value::Null),
        (crate::citus::connection::BLOCK_NAME, Value::Null),
        (
            "coordinator",
            object(vec![
                ("host", address.host.as_str().into()),
                ("port", Value::int(address.port as i64)),
                ("node_id", Value::Null),
            ]),
        ),
        (WORKER_BLOCK, Value::Map(BTreeMap::new())),
        (WORKER_NODE_BLOCK, Value::List(Vec::new())),
        ("rebalance", Value::Null),
        ("timeouts", Value::Null),
    ])
}

/// Reads the live cluster. `None` when the coordinator has no citus extension
/// any more (the cluster is gone and Terraform plans to create it).
pub async fn observe(spec: &ClusterSpec, prior: &Value, diags: &mut Diagnostics) -> Option<Value> {
    let client = match connect_coordinator(spec).await {
        Ok(c) => c,
        Err(failure) => {
            failure.report(diags);
            return None;
        }
    };
    let catalog_read = async {
        let Some(version) = catalog::citus_version(&client).await? else {
            return Ok(None);
        };
        let nodes = catalog::nodes(&client).await?;
        let placements = catalog::placements_per_group(&client).await?;
        let names = catalog::node_names(&client).await?;
        Ok::<_, crate::sql::SqlError>(Some((version, nodes, placements, names)))
    };
    let (version, nodes, placements, names) = match catalog_read.await {
        Ok(Some(read)) => read,
        Ok(None) => return None,
        Err(e) => {
            diags.error(
                "Cannot read the Citus catalog",
                format!("On the coordinator at {}: {e}", spec.connection.address()),
            );
            return None;
        }
    };

    let rebalance = rebalance_spec(prior.attr("rebalance"));
    let pending =
        match rebalance::pending_moves(&client, rebalance.options.strategy.as_deref()).await {
            Ok(p) => (Value::int(p.moves), Value::int(p.bytes)),
            Err(e) => {
                diags.warning(
                    "Cannot compute the rebalance plan",
                    format!(
                    "Citus could not plan a rebalance ({e}); pending moves are shown as last read."
                ),
                );
                (
                    or_default(prior.attr("pending_rebalance_moves"), Value::int(0)),
                    or_default(prior.attr("pending_rebalance_bytes"), Value::int(0)),
                )
            }
        };

    let coordinator_row = nodes.iter().find(|n| n.group_id == 0 && n.is_primary);
    let coordinator = match coordinator_row {
        Some(row) => object(vec![
            ("host", row.address.host.as_str().into()),
            ("port", Value::int(row.address.port as i64)),
            ("node_id", Value::int(row.node_id as i64)),
        ]),
        // Not registered (any more): keep the asked-for address, node_id null shows the drift.
        None => object(vec![
            ("host", kept(prior.attr("coordinator").attr("host"))),
            ("port", kept(prior.attr("coordinator").attr("port"))),
            ("node_id", Value::Null),
        ]),
    };

    let (workers, worker_sessions) = read_workers(spec, prior, &nodes, &placements, &names).await;
    let (workers, worker_nodes) = in_their_blocks(prior, workers);
    let settings_state = read_settings(prior, &client, &worker_sessions).await;
    let internode_auth_state = read_internode_auth(prior, &client, &worker_sessions).await;
    Some(object(vec![
        ("id", Value::string(spec.connection.address())),
        (
            "deregister_on_destroy",
            or_default(prior.attr("deregister_on_destroy"), Value::Bool(false)),
        ),
        (
            "update_extension",
            or_default(prior.attr("update_extension"), Value::Bool(false)),
        ),
        ("settings", settings_state),
        (super::internode_auth::BLOCK_NAME, internode_auth_state),
        ("citus_version", Value::string(version)),
        ("pending_rebalance_moves", pending.0),
        ("pending_rebalance_bytes", pending.1),
        (crate::citus::connection::BLOCK_NAME, kept(prior.attr(crate::citus::connection::BLOCK_NAME))),
        ("coordinator", coordinator),
        (WORKER_BLOCK, Value::Map(workers)),
        (WORKER_NODE_BLOCK, Value::List(worker_nodes)),
        ("rebalance", kept(prior.attr("rebalance"))),
        ("timeouts", kept(prior.attr("timeouts"))),
    ]))
}

/// Maps each primary worker row to a key: the prior state's key for that node
/// (by node id, then address), else the name recorded at the last apply, else
/// its address. Nodes added by hand thus show up, and ones removed by hand vanish.
fn worker_key(
    node: &DistNode,
    prior_workers: &BTreeMap<String, Value>,
    names: &BTreeMap<String, String>,
) -> String {
    let by_id = prior_workers
        .iter()
        .find(|(_, w)| w.attr("node_id").as_i64() == Some(node.node_id as i64));
    let by_address = || {
        prior_workers.iter().find(|(_, w)| {
            w.attr("host").as_str() == Some(&node.address.host)
                && w.attr("port").as_i64() == Some(node.address.port as i64)
        })
    };
    match by_id.or_else(by_address) {
        Some((key, _)) => key.clone(),
        None => names
            .get(&node.address.to_string())
            .cloned()
            .unwrap_or_else(|| node.address.to_string()),
    }
}

async fn read_workers(
    spec: &ClusterSpec,
    prior: &Value,
    nodes: &[DistNode],
    placements: &std::collections::HashMap<i32, i64>,
    names: &BTreeMap<String, String>,
) -> (BTreeMap<String, Value>, Vec<tokio_postgres::Client>) {
    let prior_workers: BTreeMap<String, Value> = named_workers(prior)
        .into_iter()
        .map(|w| (w.name, w.value.clone()))
        .collect();
    let primaries: Vec<&DistNode> = nodes
        .iter()
        .filter(|n| n.is_primary && n.group_id != 0)
        .collect();
    let keyed: Vec<(String, &DistNode)> = primaries
        .iter()
        .map(|n| (worker_key(n, &prior_workers, names), *n))
        .collect();

    // Probe every worker at the address the provider uses for it, concurrently.
    let probes = join_all(keyed.iter().map(|(key, node)| {
        let own = prior_workers.get(key).cloned().unwrap_or(Value::Null);
        let connect = NodeAddress::new(
            own.attr("connect_host")
                .as_str()
                .unwrap_or(&node.address.host),
            own.attr("connect_port")
                .as_i64()
                .map(|p| p as u16)
                .unwrap_or(node.address.port),
        );
        probe(spec.node_connection(&connect))
    }))
    .await;

    let mut workers = BTreeMap::new();
    let mut sessions = Vec::new();
    for ((key, node), session) in keyed.into_iter().zip(probes) {
        let reachable = session.is_some();
        sessions.extend(session);
        let own = prior_workers.get(&key).cloned().unwrap_or(Value::Null);
        let replicas = read_replicas(node, nodes, own.attr("read_replica"));
        workers.insert(
            key,
            object(vec![
                ("host", node.address.host.as_str().into()),
                ("port", Value::int(node.address.port as i64)),
                ("connect_host", kept(own.attr("connect_host"))),
                ("connect_port", kept(own.attr("connect_port"))),
                ("should_have_shards", Value::Bool(node.should_have_shards)),
                ("node_id", Value::int(node.node_id as i64)),
                ("group_id", Value::int(node.group_id as i64)),
                ("is_active", Value::Bool(node.is_active)),
                ("reachable", Value::Bool(reachable)),
                (
                    "shard_placements",
                    Value::int(placements.get(&node.group_id).copied().unwrap_or(0)),
                ),
                ("read_replica", Value::List(replicas)),
            ]),
        );
    }
    (workers, sessions)
}

/// Splits the workers read into the two forms of the configuration: a
/// worker the prior state has as a `worker_node` stays one, in the prior's
/// order, named by `name`; every other (one added by hand, too) is a
/// `worker` block, so it shows in the plan as one to remove.
fn in_their_blocks(prior: &Value, mut workers: BTreeMap<String, Value>) -> (BTreeMap<String, Value>, Vec<Value>) {
    let mut listed = Vec::new();
    for node in prior.attr(WORKER_NODE_BLOCK).as_elements().unwrap_or_default() {
        let Some(name) = node.attr("name").as_str() else { continue };
        if let Some(Value::Object(mut fields)) = workers.remove(name) {
            fields.insert("name".into(), Value::string(name));
            listed.push(Value::Object(fields));
        }
    }
    (workers, listed)
}

/// The owned settings as the reachable nodes have them; null when the
/// resource owns none (the configuration leaves `settings` out).
async fn read_settings(
    prior: &Value,
    coordinator: &tokio_postgres::Client,
    workers: &[tokio_postgres::Client],
) -> Value {
    if prior.attr("settings").is_null() {
        return Value::Null;
    }
    let wanted = super::settings::from_value(prior);
    let owned: BTreeSet<String> = wanted.keys().cloned().collect();
    let reads = join_all(
        std::iter::once(coordinator)
            .chain(workers)
            .map(super::settings::read),
    )
    .await;
    let per_node: Vec<BTreeMap<String, String>> = reads.into_iter().flatten().collect();
    super::settings::merge(&owned, &per_node, &wanted)
}

/// The internode passwords as the reachable nodes have them (a node that
/// cannot be read counts as missing its rows).
async fn read_internode_auth(
    prior: &Value,
    coordinator: &tokio_postgres::Client,
    workers: &[tokio_postgres::Client],
) -> Value {
    let roles: Vec<String> = super::internode_auth::roles(prior).into_iter().collect();
    if roles.is_empty() {
        return super::internode_auth::merge(prior, &[]);
    }
    let reads = join_all(
        std::iter::once(coordinator)
            .chain(workers)
            .map(|client| super::internode_auth::read(client, &roles)),
    )
    .await;
    let per_node: Vec<BTreeMap<(String, i32), String>> =
        reads.into_iter().map(Result::unwrap_or_default).collect();
    super::internode_auth::merge(prior, &per_node)
}

/// Secondaries of a worker's group, in the prior state's order, new ones last.
fn read_replicas(primary: &DistNode, nodes: &[DistNode], prior: &Value) -> Vec<Value> {
    let prior = prior.as_elements().unwrap_or_default();
    let mut secondaries: Vec<&DistNode> = nodes
        .iter()
        .filter(|n| !n.is_primary && n.group_id == primary.group_id)
        .collect();
    let position = |n: &DistNode| {
        prior
            .iter()
            .position(|r| {
                r.attr("host").as_str() == Some(&n.address.host)
                    && r.attr("port").as_i64() == Some(n.address.port as i64)
            })
            .unwrap_or(usize::MAX)
    };
    secondaries.sort_by_key(|n| (position(n), n.node_id));
    secondaries
        .into_iter()
        .map(|n| {
            let own = prior.get(position(n)).cloned().unwrap_or(Value::Null);
            object(vec![
                ("host", n.address.host.as_str().into()),
                ("port", Value::int(n.address.port as i64)),
                ("connect_host", kept(own.attr("connect_host"))),
                ("connect_port", kept(own.attr("connect_port"))),
                ("node_id", Value::int(n.node_id as i64)),
            ])
        })
        .collect()
}

/// A session on the node, or `None` when it cannot be reached quickly.
async fn probe(settings: ConnectionSettings) -> Option<tokio_postgres::Client> {
    let settings = ConnectionSettings {
        connect_timeout: settings.connect_timeout.min(Duration::from_secs(3)),
        ..settings
    };
    settings.connect().await.ok()
}

/// Plans what apply will make true of the live values: every worker reachable
/// and active, ids for nodes that are new or move to another address, and,
/// whenever apply will do anything, fresh rebalance figures (apply may move
/// shards, so those are known only after it).
pub fn plan_live_values(prior: &Value, planned: &mut Value) {
    let rebalance_enabled = rebalance_spec(planned.attr("rebalance")).enabled;
    let update_extension = planned.attr("update_extension").as_bool().unwrap_or(false);
    let readdressed = prior.attr("coordinator").attr("host")
        != planned.attr("coordinator").attr("host")
        || prior.attr("coordinator").attr("port") != planned.attr("coordinator").attr("port")
        || prior.attr(crate::citus::connection::BLOCK_NAME) != planned.attr(crate::citus::connection::BLOCK_NAME);
    let Some(fields) = planned.as_object_mut() else {
        return;
    };
    if readdressed {
        fields.insert("id".into(), Value::Unknown);
    }
    if let Some(Value::Object(coordinator)) = fields.get_mut("coordinator") {
        if coordinator.get("node_id").is_none_or(Value::is_null) || readdressed {
            coordinator.insert("node_id".into(), Value::Unknown);
        }
    }
    if let Some(Value::Map(workers)) = fields.get_mut(WORKER_BLOCK) {
        for (key, worker) in workers.iter_mut() {
            plan_worker(worker, map_entry(prior.attr(WORKER_BLOCK), key));
        }
    }
    if let Some(Value::List(nodes)) = fields.get_mut(WORKER_NODE_BLOCK) {
        for node in nodes.iter_mut() {
            let prior_node = node_named(prior, node.attr("name"));
            carry_by_name(node, prior_node);
            plan_worker(node, prior_node);
        }
    }
    let rebalancing = rebalance_enabled
        && prior
            .attr("pending_rebalance_moves")
            .as_i64()
            .is_some_and(|m| m > 0);
    if rebalancing || Value::Object(fields.clone()) != *prior {
        fields.insert("pending_rebalance_moves".into(), Value::Unknown);
        fields.insert("pending_rebalance_bytes".into(), Value::Unknown);
        if update_extension {
            fields.insert("citus_version".into(), Value::Unknown);
        }
        if rebalance_enabled {
            for (name, worker_block) in fields.iter_mut() {
                let workers: Vec<&mut Value> = match worker_block {
                    Value::Map(workers) if name == WORKER_BLOCK => workers.values_mut().collect(),
                    Value::List(nodes) if name == WORKER_NODE_BLOCK => nodes.iter_mut().collect(),
                    _ => continue,
                };
                for worker in workers {
                    if let Some(w) = worker.as_object_mut() {
                        w.insert("shard_placements".into(), Value::Unknown);
                    }
                }
            }
        }
    }
}

/// The prior state's `worker_node` of that name.
fn node_named<'a>(prior: &'a Value, name: &Value) -> &'a Value {
    static NULL: Value = Value::Null;
    prior
        .attr(WORKER_NODE_BLOCK)
        .as_elements()
        .unwrap_or_default()
        .iter()
        .find(|n| !name.is_null() && n.attr("name") == name)
        .unwrap_or(&NULL)
}

/// Terraform pairs list elements by position, so the computed values a
/// `worker_node` got from the prior state may be another worker's: they are
/// taken from the prior element of the same name instead (unknown for a
/// new name; left unknown where the plan already made them so).
fn carry_by_name(node: &mut Value, prior: &Value) {
    let Some(fields) = node.as_object_mut() else {
        return;
    };
    for computed in ["node_id", "group_id", "is_active", "reachable", "shard_placements"] {
        let kept_from_state = matches!(computed, "node_id" | "group_id");
        if !kept_from_state && fields.get(computed).is_some_and(Value::is_unknown) {
            continue;
        }
        let value = match prior.attr(computed) {
            Value::Null => Value::Unknown,
            known => known.clone(),
        };
        fields.insert(computed.into(), value);
    }
    let prior_replicas = prior.attr("read_replica").as_elements().unwrap_or_default();
    if let Some(Value::List(replicas)) = fields.get_mut("read_replica") {
        for (i, replica) in replicas.iter_mut().enumerate() {
            if let Some(r) = replica.as_object_mut() {
                let id = prior_replicas.get(i).map(|p| p.attr("node_id").clone()).unwrap_or(Value::Null);
                r.insert("node_id".into(), if id.is_null() { Value::Unknown } else { id });
            }
        }
    }
}

fn map_entry<'a>(map: &'a Value, key: &str) -> &'a Value {
    match map {
        Value::Map(m) => m.get(key).unwrap_or(&Value::Null),
        _ => &Value::Null,
    }
}

fn same_address(a: &Value, b: &Value) -> bool {
    a.attr("host") == b.attr("host") && a.attr("port") == b.attr("port")
}

/// A worker whose address changes is added anew and the old node drained:
/// new ids, and its replicas join the new group.
fn plan_worker(worker: &mut Value, prior: &Value) {
    let moved = prior.is_null() || !same_address(worker, prior);
    let Some(w) = worker.as_object_mut() else {
        return;
    };
    for live in ["reachable", "is_active"] {
        if !w.get(live).is_some_and(Value::is_unknown) {
            w.insert(live.into(), Value::Bool(true));
        }
    }
    for id in ["node_id", "group_id"] {
        if moved || w.get(id).is_none_or(Value::is_null) {
            w.insert(id.into(), Value::Unknown);
        }
    }
    let prior_replicas = prior
        .attr("read_replica")
        .as_elements()
        .unwrap_or_default()
        .to_vec();
    if let Some(Value::List(replicas)) = w.get_mut("read_replica") {
        for (i, replica) in replicas.iter_mut().enumerate() {
            let same = prior_replicas
                .get(i)
                .is_some_and(|p| same_address(replica, p));
            if let Some(r) = replica.as_object_mut() {
                if moved || !same || r.get("node_id").is_none_or(Value::is_null) {
                    r.insert("node_id".into(), Value::Unknown);
                }
            }
        }
    }
}
