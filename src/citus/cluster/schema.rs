//! The `citus_cluster` schema.

use crate::cty::{Type, Value};
use crate::framework::validators::{self, host_name, not_blank, one_of, port, NameLike};
use crate::framework::{timeouts, Attribute, Block, NestedBlock, Schema};

use super::super::connection;

pub const TRANSFER_MODES: &[&str] = &["auto", "force_logical", "block_writes"];

fn worker_name() -> NameLike {
    NameLike {
        max_len: 63,
        allowed: |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
        explain: "letters, digits, `_`, `-` and `.`",
    }
}

fn host(what: &str) -> Attribute {
    Attribute::required("host", Type::String)
        .describe(format!(
            "Host name or address Citus registers for {what}: how the other nodes reach it."
        ))
        .validate(host_name())
}

fn node_port(what: &str) -> Attribute {
    Attribute::optional("port", Type::Number)
        .describe(format!("Port of {what}. Defaults to 5432."))
        .validate(port())
        .default(Value::int(5432))
}

fn connect_host() -> Attribute {
    Attribute::optional("connect_host", Type::String)
        .describe("Host the provider itself uses to reach this node, when it differs from `host` (Terraform running outside the cluster's network).")
        .validate(validators::connect_host())
}

fn connect_port() -> Attribute {
    Attribute::optional("connect_port", Type::Number)
        .describe("Port the provider itself uses to reach this node, when it differs from `port`.")
        .validate(port())
}

fn node_id() -> Attribute {
    Attribute::computed("node_id", Type::Number)
        .describe("Citus' `nodeid` of this node.")
        .use_state_for_unknown()
}

/// Attributes shared by `worker` blocks (named by their label) and
/// `worker_node` blocks (named by their `name`).
fn worker_block(description: &str) -> Block {
    let replica = Block::new(
        "A read replica of the worker, registered as a secondary in the worker's group.",
    )
    .attribute(host("the replica"))
    .attribute(node_port("the replica"))
    .attribute(connect_host())
    .attribute(connect_port())
    .attribute(node_id());

    Block::new(description)
        .attribute(host("the worker"))
        .attribute(node_port("the worker"))
        .attribute(connect_host())
        .attribute(connect_port())
        .attribute(
            Attribute::optional("should_have_shards", Type::Bool)
                .describe("Whether the rebalancer places shards on this worker. Defaults to `true`.")
                .default(true),
        )
        .attribute(node_id())
        .attribute(
            Attribute::computed("group_id", Type::Number)
                .describe("Citus' `groupid`, chosen by Citus when the worker is added.")
                .use_state_for_unknown(),
        )
        .attribute(Attribute::computed("is_active", Type::Bool).describe("Whether Citus considers the node active."))
        .attribute(
            Attribute::computed("reachable", Type::Bool)
                .describe("Whether the provider could connect to the worker when it last read the cluster."),
        )
        .attribute(
            Attribute::computed("shard_placements", Type::Number)
                .describe("Number of shard placements of distributed tables on the worker (reference-table copies, which every node has, are not counted)."),
        )
        .block(NestedBlock::list("read_replica", replica))
}

/// Where a worker's name is: the label of a `worker` block, or the `name` of
/// a `worker_node` block.
pub const WORKER_BLOCK: &str = "worker";
pub const WORKER_NODE_BLOCK: &str = "worker_node";

fn worker_node_block() -> Block {
    let mut block = worker_block(
        "A worker named by its `name` attribute: the same as a `worker` block, for configurations that make workers with a `dynamic` block (Terraform requires a dynamic block's labels to be known when it validates, which module variables never are). Workers are matched by name, never by position: removing one from the middle of the list changes no other.",
    );
    let name = Attribute::required("name", Type::String)
        .describe("The worker's name, unique among `worker` and `worker_node` blocks.")
        .validate(worker_name());
    block.attributes.insert(0, name);
    block
}

pub fn schema() -> Schema {
    let coordinator =
        Block::new("The coordinator as Citus registers it (`citus_set_coordinator_host`).")
            .attribute(host("the coordinator"))
            .attribute(node_port("the coordinator"))
            .attribute(node_id());

    let rebalance = Block::new("How the cluster is kept balanced. Without this block, rebalancing is on with Citus' default strategy and `auto` transfer mode.")
        .attribute(
            Attribute::optional("enabled", Type::Bool)
                .describe("Run the background rebalancer after membership changes and whenever its plan is not empty. Defaults to `true`.")
                .default(true),
        )
        .attribute(
            Attribute::optional("strategy", Type::String)
                .describe("A rebalance strategy from `pg_dist_rebalance_strategy`, e.g. `by_shard_count` or `by_disk_size`. Defaults to the cluster's default strategy.")
                .validate(not_blank()),
        )
        .attribute(
            Attribute::optional("shard_transfer_mode", Type::String)
                .describe("`auto` (logical replication where possible), `force_logical`, or `block_writes` (fast, blocks writes to moving shards). Defaults to `auto`.")
                .validate(one_of(TRANSFER_MODES))
                .default("auto"),
        );

    let block = Block::new(
        "Citus membership as code: the coordinator, the workers and their read replicas, and the \
         cluster-wide shard balance.\n\n\
         Workers are added with `citus_add_node` and removed only by draining them first \
         (`should_have_shards = false`, a drain-only background rebalance tracked to `finished`, then \
         `citus_remove_node`), never by losing a shard. After membership changes, and whenever the \
         rebalance plan is not empty, the background rebalancer runs until it finishes; a job already \
         running (say, from an interrupted apply) is adopted.\n\n\
         **Destroy** leaves the cluster as it is and only forgets it, unless `deregister_on_destroy` is \
         set: then the workers are removed from the metadata, and destroy refuses, naming the tables and \
         removing nothing, while any worker still holds placements. Data is never dropped.",
    )
    .attribute(
        Attribute::computed("id", Type::String)
            .describe("The address the provider uses to reach the coordinator, `host:port`.")
            .use_state_for_unknown(),
    )
    .attribute(
        Attribute::optional("deregister_on_destroy", Type::Bool)
            .describe("On destroy, remove every worker and read replica from the Citus metadata. Destroy refuses, and removes nothing, while any worker holds shard placements. Defaults to `false` (destroy only forgets the cluster).")
            .default(false),
    )
    .attribute(
        Attribute::optional("update_extension", Type::Bool)
            .describe("Run `ALTER EXTENSION citus UPDATE` on the coordinator and every worker when the installed Citus is newer than the extension (read replicas follow through replication). Defaults to `false`.")
            .default(false),
    )
    .attribute(
        Attribute::optional("settings", Type::map(Type::String))
            .describe("`citus.*` parameters this resource owns, written with `ALTER SYSTEM` on the coordinator and every worker and reloaded. Read back from each node's `postgresql.auto.conf`, so a node that lost one shows as drift. Parameters that need a restart take effect at the next restart.")
    )
    .attribute(Attribute::computed("citus_version", Type::String).describe("Version of the citus extension on the coordinator."))
    .attribute(
        Attribute::computed("pending_rebalance_moves", Type::Number)
            .describe("Shard moves the rebalancer would make now. When it is above 0 and rebalancing is enabled, the plan shows it as known after apply: apply runs a rebalance."),
    )
    .attribute(
        Attribute::computed("pending_rebalance_bytes", Type::Number)
            .describe("Bytes those moves would copy."),
    )
    .block(connection::block())
    .block(super::internode_auth::block())
    .block(NestedBlock::single("coordinator", coordinator).required())
    .block(NestedBlock::map(
        WORKER_BLOCK,
        worker_block("A worker, keyed by a name of your choosing: removing one never shifts the others."),
    ))
    .block(NestedBlock::list(WORKER_NODE_BLOCK, worker_node_block()))
    .block(NestedBlock::single("rebalance", rebalance))
    .block(timeouts::block(&["create", "update"]));

    Schema::new(0, block)
}

pub fn validate_worker_name() -> NameLike {
    worker_name()
}
