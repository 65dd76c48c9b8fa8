//! Bringing a Citus cluster to what a `citus_cluster` plan asks for.
//!
//! Order matters: check every node is reachable before changing anything, so
//! a node that is down fails the apply without half-made changes; adopt a
//! rebalance job left by an interrupted apply; then extension, coordinator,
//! workers, replicas, drain-then-remove, and a final rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_postgres::Client;

use crate::framework::{AttrPath, Context, Diagnostics};
use crate::sql::{ConnectionSettings, SqlError};

use super::super::rebalance::{self, RebalanceError};
use super::super::retry::execute_with_retries;
use super::catalog::{self, DistNode};
use super::internode_auth::{self, RolePassword};
use super::model::{ClusterSpec, NodeAddress, PreviouslyOwned};

/// Why a convergence stopped; turned into one diagnostic with a path.
pub struct Failure {
    pub path: Option<AttrPath>,
    pub summary: String,
    pub detail: String,
}

impl Failure {
    fn at(path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            path: Some(path),
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    fn general(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            path: None,
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    pub fn report(self, diags: &mut Diagnostics) {
        match self.path {
            Some(path) => diags.error_at(path, self.summary, self.detail),
            None => diags.error(self.summary, self.detail),
        }
    }
}

fn sql_failure(action: &str, e: SqlError) -> Failure {
    Failure::general(format!("Citus refused to {action}"), e.message)
}

fn rebalance_failure(e: RebalanceError) -> Failure {
    Failure::general("Rebalance did not finish", e.to_string())
}

pub async fn connect_coordinator(spec: &ClusterSpec) -> Result<Client, Failure> {
    spec.connection.connect().await.map_err(|e| {
        Failure::at(
            AttrPath::root("coordinator").attr("host"),
            "Cannot connect to the coordinator",
            format!(
                "The provider could not connect to the coordinator at {}: {e}",
                spec.connection.address()
            ),
        )
    })
}

/// A session on a worker, opened by the preflight check.
struct NodeSession {
    what: String,
    client: Client,
    /// Read replicas are hot standbys: they get the extension from their primary.
    is_replica: bool,
}

/// Everything the plan names, concurrently: the nodes to keep or add must be
/// reachable before anything changes.
async fn preflight(spec: &ClusterSpec) -> Result<Vec<NodeSession>, Failure> {
    let mut targets: Vec<(AttrPath, String, ConnectionSettings, bool)> = Vec::new();
    for (name, worker) in &spec.workers {
        let path = worker.path.clone();
        targets.push((
            path.clone(),
            format!("worker {name:?}"),
            spec.node_connection(&worker.connect),
            false,
        ));
        for (i, replica) in worker.replicas.iter().enumerate() {
            targets.push((
                path.attr("read_replica").index(i),
                format!("read replica {i} of worker {name:?}"),
                spec.node_connection(&replica.connect),
                true,
            ));
        }
    }
    let attempts = join_all(targets.iter().map(|(_, _, settings, _)| settings.connect())).await;
    let mut clients = Vec::new();
    let mut first_failure = None;
    for ((path, what, settings, is_replica), attempt) in targets.into_iter().zip(attempts) {
        match attempt {
            Ok(client) => clients.push(NodeSession {
                what,
                client,
                is_replica,
            }),
            Err(e) if first_failure.is_none() => {
                first_failure = Some(Failure::at(
                    path,
                    "Node unreachable",
                    format!(
                        "The provider could not connect to {what} at {}: {e}. Nothing was changed. \
                         Start the node (or fix its address) and apply again.",
                        settings.address()
                    ),
                ))
            }
            Err(_) => {}
        }
    }
    match first_failure {
        Some(f) => Err(f),
        None => Ok(clients),
    }
}

/// Creates (and, when asked, updates) the extension on the coordinator and
/// every worker, concurrently.
async fn ensure_extension(
    coordinator: &Client,
    nodes: &[NodeSession],
    update: bool,
) -> Result<(), Failure> {
    let primaries = nodes
        .iter()
        .filter(|n| !n.is_replica)
        .map(|n| (n.what.clone(), &n.client));
    let all = std::iter::once(("the coordinator".to_string(), coordinator)).chain(primaries);
    let results = join_all(all.map(|(what, client)| async move {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
            .await
            .map_err(|e| (what.clone(), SqlError::from(e)))?;
        if update {
            let outdated: bool = client
                .query_one(
                    "SELECT default_version IS DISTINCT FROM installed_version FROM pg_catalog.pg_available_extensions WHERE name = 'citus'",
                    &[],
                )
                .await
                .map_err(|e| (what.clone(), SqlError::from(e)))?
                .get(0);
            if outdated {
                client.batch_execute("ALTER EXTENSION citus UPDATE").await.map_err(|e| (what.clone(), SqlError::from(e)))?;
            }
        }
        Ok::<_, (String, SqlError)>(())
    }))
    .await;
    for result in results {
        if let Err((what, e)) = result {
            return Err(Failure::general(
                "Cannot create the citus extension",
                format!("On {what}: {e}"),
            ));
        }
    }
    Ok(())
}

/// Owned settings on the coordinator and every worker, concurrently.
async fn apply_settings(
    coordinator: &Client,
    nodes: &[NodeSession],
    wanted: &BTreeMap<String, String>,
    previously_owned: &BTreeSet<String>,
) -> Result<(), Failure> {
    if wanted.is_empty() && previously_owned.is_empty() {
        return Ok(());
    }
    let primaries = nodes
        .iter()
        .filter(|n| !n.is_replica)
        .map(|n| (n.what.as_str(), &n.client));
    let all: Vec<(&str, &Client)> = std::iter::once(("the coordinator", coordinator))
        .chain(primaries)
        .collect();
    let results = join_all(
        all.iter()
            .map(|(_, client)| super::settings::apply(client, wanted, previously_owned)),
    )
    .await;
    for ((what, _), result) in all.iter().zip(results) {
        if let Err(e) = result {
            return Err(Failure::at(
                AttrPath::root("settings"),
                "Cannot apply Citus settings",
                format!("On {what}: {e}"),
            ));
        }
    }
    Ok(())
}

/// Internode passwords on the coordinator and every worker, concurrently,
/// before any worker is added (`citus_add_node` already connects with them).
async fn apply_internode_auth(
    coordinator: &mut Client,
    nodes: &mut [NodeSession],
    wanted: &[RolePassword],
    previously_owned: &BTreeSet<String>,
) -> Result<(), Failure> {
    if wanted.is_empty() && previously_owned.is_empty() {
        return Ok(());
    }
    let primaries = nodes
        .iter_mut()
        .filter(|n| !n.is_replica)
        .map(|n| (n.what.clone(), &mut n.client));
    let all: Vec<(String, &mut Client)> = std::iter::once(("the coordinator".to_string(), coordinator))
        .chain(primaries)
        .collect();
    let results = join_all(all.into_iter().map(|(what, client)| async move {
        internode_auth::apply(client, wanted, previously_owned).await.map_err(|e| (what, e))
    }))
    .await;
    match results.into_iter().find_map(Result::err) {
        Some((what, e)) => Err(Failure::at(
            AttrPath::root(internode_auth::BLOCK_NAME).key(&e.role),
            "Cannot write the internode password",
            format!("On {what}: {}", e.message),
        )),
        None => Ok(()),
    }
}

pub async fn converge(
    ctx: &Context,
    spec: &ClusterSpec,
    previously_owned: &PreviouslyOwned,
    timeout: Duration,
) -> Result<(), Failure> {
    // One deadline for the whole apply: every wait gets what is left of it.
    let deadline = Instant::now() + timeout;
    let mut coordinator = connect_coordinator(spec).await?;
    let mut node_clients = preflight(spec).await?;
    refuse_unreachable_holders(&coordinator, spec).await?;
    ensure_extension(&coordinator, &node_clients, spec.update_extension).await?;
    apply_settings(
        &coordinator,
        &node_clients,
        &spec.settings,
        &previously_owned.settings,
    )
    .await?;
    apply_internode_auth(
        &mut coordinator,
        &mut node_clients,
        &spec.internode_auth,
        &previously_owned.internode_roles,
    )
    .await?;
    drop(node_clients);

    // A job from an interrupted apply finishes first; membership changes while
    // it moves shards would only fight it.
    if let Some(job) = rebalance::active_job(&coordinator)
        .await
        .map_err(|e| sql_failure("report its jobs", e))?
    {
        log::info!("adopting running rebalance job {job}");
        rebalance::wait(&coordinator, job, &ctx.stop, left(deadline))
            .await
            .map_err(rebalance_failure)?;
    }

    register_coordinator(ctx, &coordinator, spec).await?;
    let mut changed = add_and_update_workers(ctx, &coordinator, spec).await?;
    changed |= remove_departed_workers(ctx, &coordinator, spec, deadline).await?;

    if spec.rebalance.enabled {
        let pending =
            rebalance::pending_moves(&coordinator, spec.rebalance.options.strategy.as_deref())
                .await
                .map_err(|e| sql_failure("plan a rebalance", e))?;
        if changed || pending.moves > 0 {
            if let Some(job) = rebalance::start(&coordinator, &spec.rebalance.options, false)
                .await
                .map_err(|e| sql_failure("start a rebalance", e))?
            {
                log::info!(
                    "started rebalance job {job} ({} moves, {} bytes planned)",
                    pending.moves,
                    pending.bytes
                );
                rebalance::wait(&coordinator, job, &ctx.stop, left(deadline))
                    .await
                    .map_err(rebalance_failure)?;
            }
        }
    }

    let names: BTreeMap<String, String> = spec
        .workers
        .iter()
        .map(|(name, w)| (w.address.to_string(), name.clone()))
        .collect();
    catalog::record_node_names(&mut coordinator, &names)
        .await
        .map_err(|e| sql_failure("record worker names", e))?;
    Ok(())
}

async fn register_coordinator(
    ctx: &Context,
    client: &Client,
    spec: &ClusterSpec,
) -> Result<(), Failure> {
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    let current = nodes.iter().find(|n| n.group_id == 0 && n.is_primary);
    if current.map(|n| &n.address) != Some(&spec.coordinator) {
        let (host, port) = (spec.coordinator.host.as_str(), spec.coordinator.port as i32);
        execute_with_retries(
            ctx,
            client,
            "SELECT pg_catalog.citus_set_coordinator_host($1, $2)",
            &[&host, &port],
        )
        .await
        .map_err(|e| {
            sql_failure(
                &format!("register the coordinator as {}", spec.coordinator),
                e,
            )
        })?;
    }
    Ok(())
}

/// Adds missing workers and replicas, repoints moved ones, sets properties.
/// Returns whether membership or placement eligibility changed.
async fn add_and_update_workers(
    ctx: &Context,
    client: &Client,
    spec: &ClusterSpec,
) -> Result<bool, Failure> {
    let mut changed = false;
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    for worker in spec.workers.values() {
        let path = worker.path.clone();
        let existing = nodes
            .iter()
            .find(|n| n.is_primary && n.address == worker.address);
        let (host, port) = (worker.address.host.as_str(), worker.address.port as i32);
        let should_have_shards = match existing {
            Some(node) => node.should_have_shards,
            None => {
                execute_with_retries(
                    ctx,
                    client,
                    "SELECT pg_catalog.citus_add_node($1, $2)",
                    &[&host, &port],
                )
                .await
                .map_err(|e| {
                    Failure::at(
                        path.clone(),
                        "Cannot add the worker",
                        format!("citus_add_node({host:?}, {port}): {e}"),
                    )
                })?;
                changed = true;
                true
            }
        };
        if existing.is_some_and(|node| !node.is_active) {
            // Disabled by hand (citus_disable_node): the plan promised an active node.
            execute_with_retries(
                ctx,
                client,
                "SELECT pg_catalog.citus_activate_node($1, $2)",
                &[&host, &port],
            )
            .await
            .map_err(|e| {
                Failure::at(
                    path.clone(),
                    "Cannot activate the worker",
                    format!("citus_activate_node({host:?}, {port}): {e}"),
                )
            })?;
            changed = true;
        }
        if should_have_shards != worker.should_have_shards {
            let wanted = worker.should_have_shards;
            execute_with_retries(
                ctx,
                client,
                "SELECT pg_catalog.citus_set_node_property($1, $2, 'shouldhaveshards', $3)",
                &[&host, &port, &wanted],
            )
            .await
            .map_err(|e| {
                Failure::at(
                    path.attr("should_have_shards"),
                    "Cannot set should_have_shards",
                    e.message,
                )
            })?;
            changed = true;
        }
    }
    // Replicas join their worker's group as it is now (a worker added above has a new one).
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    for worker in spec.workers.values() {
        changed |= converge_replicas(ctx, client, &nodes, worker).await?;
    }
    Ok(changed)
}

async fn converge_replicas(
    ctx: &Context,
    client: &Client,
    nodes: &[DistNode],
    worker: &super::model::WorkerSpec,
) -> Result<bool, Failure> {
    let mut changed = false;
    let group = nodes
        .iter()
        .find(|n| n.is_primary && n.address == worker.address)
        .map(|n| n.group_id);
    let wanted: BTreeSet<&NodeAddress> = worker.replicas.iter().map(|r| &r.address).collect();
    let in_group = |n: &DistNode| Some(n.group_id) == group;
    // Secondaries of this group no longer wanted, and wanted ones registered in another group.
    for stale in nodes.iter().filter(|n| {
        !n.is_primary
            && ((in_group(n) && !wanted.contains(&n.address))
                || (!in_group(n) && wanted.contains(&n.address)))
    }) {
        remove_node(ctx, client, &stale.address).await?;
        changed = true;
    }
    for (i, replica) in worker.replicas.iter().enumerate() {
        if nodes
            .iter()
            .any(|n| !n.is_primary && in_group(n) && n.address == replica.address)
        {
            continue;
        }
        let (host, port) = (replica.address.host.as_str(), replica.address.port as i32);
        let (primary_host, primary_port) =
            (worker.address.host.as_str(), worker.address.port as i32);
        execute_with_retries(
            ctx,
            client,
            "SELECT pg_catalog.citus_add_secondary_node($1, $2, $3, $4)",
            &[&host, &port, &primary_host, &primary_port],
        )
        .await
        .map_err(|e| {
            Failure::at(
                worker
                    .path
                    .attr("read_replica")
                    .index(i),
                "Cannot add the read replica",
                e.message,
            )
        })?;
        changed = true;
    }
    Ok(changed)
}

async fn remove_node(ctx: &Context, client: &Client, address: &NodeAddress) -> Result<(), Failure> {
    let (host, port) = (address.host.as_str(), address.port as i32);
    execute_with_retries(
        ctx,
        client,
        "SELECT pg_catalog.citus_remove_node($1, $2)",
        &[&host, &port],
    )
    .await
    .map_err(|e| sql_failure(&format!("remove node {address}"), e))
}

/// Workers registered in Citus but absent from the plan leave by drain, then
/// removal: never by losing a shard.
async fn remove_departed_workers(
    ctx: &Context,
    client: &Client,
    spec: &ClusterSpec,
    deadline: Instant,
) -> Result<bool, Failure> {
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    let leaving = departing_workers(client, spec).await?;
    if leaving.is_empty() {
        return Ok(false);
    }
    let placements = catalog::placements_per_group(client)
        .await
        .map_err(|e| sql_failure("count placements", e))?;

    for node in &leaving {
        if node.should_have_shards {
            let (host, port) = (node.address.host.as_str(), node.address.port as i32);
            execute_with_retries(
                ctx,
                client,
                "SELECT pg_catalog.citus_set_node_property($1, $2, 'shouldhaveshards', false)",
                &[&host, &port],
            )
            .await
            .map_err(|e| sql_failure(&format!("stop placing shards on {}", node.address), e))?;
        }
    }
    let holds_shards = leaving
        .iter()
        .any(|n| placements.get(&n.group_id).copied().unwrap_or(0) > 0);
    if holds_shards {
        log::info!("draining {} departing worker(s)", leaving.len());
        if let Some(job) = rebalance::start(client, &spec.rebalance.options, true)
            .await
            .map_err(|e| sql_failure("start draining the departing workers", e))?
        {
            rebalance::wait(client, job, &ctx.stop, left(deadline))
                .await
                .map_err(rebalance_failure)?;
        }
    }
    for node in &leaving {
        for secondary in nodes
            .iter()
            .filter(|n| !n.is_primary && n.group_id == node.group_id)
        {
            remove_node(ctx, client, &secondary.address).await?;
        }
        remove_node(ctx, client, &node.address).await?;
    }
    Ok(true)
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Registered primary workers the plan no longer names.
async fn departing_workers(client: &Client, spec: &ClusterSpec) -> Result<Vec<DistNode>, Failure> {
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    let wanted: BTreeSet<&NodeAddress> = spec.workers.values().map(|w| &w.address).collect();
    Ok(nodes
        .into_iter()
        .filter(|n| n.is_primary && n.group_id != 0 && !wanted.contains(&n.address))
        .collect())
}

/// A departing worker the coordinator cannot reach cannot be drained; if it
/// holds shards, say which tables and what the ways out are. Runs before any
/// change, so a refusal leaves the cluster as it was.
async fn refuse_unreachable_holders(client: &Client, spec: &ClusterSpec) -> Result<(), Failure> {
    if catalog::citus_version(client)
        .await
        .map_err(|e| sql_failure("report its version", e))?
        .is_none()
    {
        return Ok(()); // A new cluster: nothing registered, nothing departs.
    }
    let leaving = departing_workers(client, spec).await?;
    let placements = catalog::placements_per_group(client)
        .await
        .map_err(|e| sql_failure("count placements", e))?;
    for node in leaving
        .iter()
        .filter(|n| placements.get(&n.group_id).copied().unwrap_or(0) > 0)
    {
        // The drain copies from the coordinator's side, so that is where reachability counts.
        let reachable: bool = client
            .query_one(
                "SELECT pg_catalog.citus_check_connection_to_node($1, $2)",
                &[&node.address.host, &(node.address.port as i32)],
            )
            .await
            .map_err(|e| sql_failure("check a departing worker", e.into()))?
            .get(0);
        if !reachable {
            let tables = catalog::tables_in_group(client, node.group_id)
                .await
                .unwrap_or_default();
            return Err(Failure::general(
                "Cannot remove an unreachable worker that holds shards",
                format!(
                    "Worker {} (node id {}) cannot be reached from the coordinator and holds shards of: {} \
                     (with one replica per shard, the only copies). Draining it needs the node. Bring it back and \
                     apply again, or repoint its node id to a replacement server that has its data with \
                     `SELECT citus_update_node({}, 'new-host', new_port);` and update the configuration to match. \
                     Nothing was changed.",
                    node.address,
                    node.node_id,
                    tables.join(", "),
                    node.node_id,
                ),
            ));
        }
    }
    Ok(())
}

/// Destroy with `deregister_on_destroy`: removes workers holding no
/// placements; refuses, naming the tables, when any still holds some.
pub async fn deregister(ctx: &Context, spec: &ClusterSpec) -> Result<(), Failure> {
    let client = connect_coordinator(spec).await?;
    let nodes = check_deregister(&client).await?;
    for node in nodes.iter().filter(|n| !n.is_primary && n.group_id != 0) {
        remove_node(ctx, &client, &node.address).await?;
    }
    for node in nodes.iter().filter(|n| n.is_primary && n.group_id != 0) {
        remove_node(ctx, &client, &node.address).await?;
    }
    Ok(())
}

/// What destroy with `deregister_on_destroy` would refuse, checked before a
/// destroy is planned (Terraform 1.3+) as well as when it runs.
pub async fn check_deregister_possible(spec: &ClusterSpec) -> Result<(), Failure> {
    let client = connect_coordinator(spec).await?;
    check_deregister(&client).await.map(drop)
}

/// The registered nodes, or a refusal naming the workers that still hold data.
async fn check_deregister(client: &Client) -> Result<Vec<DistNode>, Failure> {
    let nodes = catalog::nodes(client)
        .await
        .map_err(|e| sql_failure("list nodes", e))?;
    let placements = catalog::placements_per_group(client)
        .await
        .map_err(|e| sql_failure("count placements", e))?;
    let workers: Vec<&DistNode> = nodes
        .iter()
        .filter(|n| n.is_primary && n.group_id != 0)
        .collect();
    let mut refused = Vec::new();
    for node in &workers {
        if placements.get(&node.group_id).copied().unwrap_or(0) > 0 {
            let tables = catalog::tables_in_group(client, node.group_id)
                .await
                .unwrap_or_default();
            refused.push(format!(
                "{} holds shards of {}",
                node.address,
                tables.join(", ")
            ));
        }
    }
    if !refused.is_empty() {
        return Err(Failure::at(
            AttrPath::root("deregister_on_destroy"),
            "Workers still hold shard placements",
            format!(
                "Destroy would deregister workers that hold data: {}. Nothing was removed. Undistribute or move those \
                 tables first, or set deregister_on_destroy = false to only forget the cluster.",
                refused.join("; ")
            ),
        ));
    }
    Ok(nodes)
}
