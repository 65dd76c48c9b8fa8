//! Typed views of `citus_cluster` values: the desired cluster read from a
//! planned value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::cty::Value;
use crate::framework::{timeouts, AttrPath};
use crate::sql::ConnectionSettings;

use super::super::rebalance::RebalanceOptions;
use super::super::ConnectionDefaults;
use super::internode_auth::RolePassword;
use super::schema::{WORKER_BLOCK, WORKER_NODE_BLOCK};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

impl NodeAddress {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddress {
            host: host.into(),
            port,
        }
    }
}

impl NodeAddress {
    /// `host:port`, or `host` for port 5432.
    pub fn parse(text: &str) -> Option<NodeAddress> {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().ok()?),
            None => (text, 5432),
        };
        (!host.is_empty() && port > 0).then(|| NodeAddress::new(host, port))
    }
}

impl std::fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub address: NodeAddress,
    pub connect: NodeAddress,
}

#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Where the configuration declares it, for diagnostics.
    pub path: AttrPath,
    pub address: NodeAddress,
    /// Where the provider connects; `address` unless `connect_host`/`connect_port` say otherwise.
    pub connect: NodeAddress,
    pub should_have_shards: bool,
    pub replicas: Vec<ReplicaSpec>,
}

#[derive(Debug, Clone)]
pub struct RebalanceSpec {
    pub enabled: bool,
    pub options: RebalanceOptions,
}

/// The cluster a planned value asks for.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub connection: ConnectionSettings,
    pub coordinator: NodeAddress,
    pub workers: BTreeMap<String, WorkerSpec>,
    pub rebalance: RebalanceSpec,
    pub deregister_on_destroy: bool,
    pub update_extension: bool,
    /// Owned `citus.*` settings.
    pub settings: BTreeMap<String, String>,
    /// Passwords Citus uses between nodes, per role.
    pub internode_auth: Vec<RolePassword>,
}

/// What the prior state owned, for what a plan drops to be undone.
#[derive(Debug, Clone, Default)]
pub struct PreviouslyOwned {
    pub settings: BTreeSet<String>,
    pub internode_roles: BTreeSet<String>,
}

/// A worker block of a value, whichever form it takes.
pub struct NamedWorker<'a> {
    pub name: String,
    /// `worker["name"]` or `worker_node[i]`.
    pub path: AttrPath,
    pub value: &'a Value,
    /// Named by a block label, which (unlike `name`) has no validator of its own.
    pub labelled: bool,
}

/// Every worker of a value: `worker` blocks named by label, then
/// `worker_node` blocks by their `name` (one whose name is not known yet is
/// left out).
pub fn named_workers(value: &Value) -> Vec<NamedWorker<'_>> {
    let mut workers: Vec<NamedWorker> = match value.attr(WORKER_BLOCK) {
        Value::Map(m) => m
            .iter()
            .map(|(name, w)| NamedWorker {
                name: name.clone(),
                path: AttrPath::root(WORKER_BLOCK).key(name),
                value: w,
                labelled: true,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (i, node) in value.attr(WORKER_NODE_BLOCK).as_elements().unwrap_or_default().iter().enumerate() {
        if let Some(name) = node.attr("name").as_str() {
            workers.push(NamedWorker {
                name: name.to_string(),
                path: AttrPath::root(WORKER_NODE_BLOCK).index(i),
                value: node,
                labelled: false,
            });
        }
    }
    workers
}

pub fn port_of(value: &Value) -> u16 {
    value.as_i64().map(|p| p as u16).unwrap_or(5432)
}

fn connect_address(node: &Value, address: &NodeAddress) -> NodeAddress {
    NodeAddress {
        host: node
            .attr("connect_host")
            .as_str()
            .unwrap_or(&address.host)
            .to_string(),
        port: node
            .attr("connect_port")
            .as_i64()
            .map(|p| p as u16)
            .unwrap_or(address.port),
    }
}

fn address_of(node: &Value) -> NodeAddress {
    NodeAddress::new(
        node.attr("host").as_str().unwrap_or_default(),
        port_of(node.attr("port")),
    )
}

impl ClusterSpec {
    pub fn from_value(value: &Value, defaults: &ConnectionDefaults) -> ClusterSpec {
        let coordinator = address_of(value.attr("coordinator"));
        // Without a host in the connection block or the provider, the address
        // the state was last read through (say, an import's), else the registered one.
        let fallback = value
            .attr("id")
            .as_str()
            .and_then(NodeAddress::parse)
            .unwrap_or_else(|| coordinator.clone());
        let connection = defaults.resolve(value.attr(crate::citus::connection::BLOCK_NAME), &fallback.host, fallback.port);
        let workers = named_workers(value)
            .into_iter()
            .map(|NamedWorker { name, path, value: w, .. }| {
                let address = address_of(w);
                let replicas = w
                    .attr("read_replica")
                    .as_elements()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        let address = address_of(r);
                        ReplicaSpec {
                            connect: connect_address(r, &address),
                            address,
                        }
                    })
                    .collect();
                let spec = WorkerSpec {
                    path,
                    connect: connect_address(w, &address),
                    address,
                    should_have_shards: w.attr("should_have_shards").as_bool().unwrap_or(true),
                    replicas,
                };
                (name, spec)
            })
            .collect();
        ClusterSpec {
            connection,
            coordinator,
            workers,
            rebalance: rebalance_spec(value.attr("rebalance")),
            deregister_on_destroy: value
                .attr("deregister_on_destroy")
                .as_bool()
                .unwrap_or(false),
            update_extension: value.attr("update_extension").as_bool().unwrap_or(false),
            settings: super::settings::from_value(value),
            internode_auth: super::internode_auth::from_value(value),
        }
    }

    /// Connection settings for a node other than the coordinator: same
    /// credentials and TLS, another address.
    pub fn node_connection(&self, connect: &NodeAddress) -> ConnectionSettings {
        ConnectionSettings {
            host: connect.host.clone(),
            port: connect.port,
            ..self.connection.clone()
        }
    }
}

pub fn rebalance_spec(block: &Value) -> RebalanceSpec {
    RebalanceSpec {
        enabled: block.attr("enabled").as_bool().unwrap_or(true),
        options: RebalanceOptions {
            strategy: block.attr("strategy").as_str().map(str::to_string),
            shard_transfer_mode: block
                .attr("shard_transfer_mode")
                .as_str()
                .unwrap_or("auto")
                .to_string(),
        },
    }
}

pub fn timeout(value: &Value, operation: &str) -> Duration {
    timeouts::get(value, operation, Duration::from_secs(30 * 60))
}
