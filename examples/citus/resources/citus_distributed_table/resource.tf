# Sentry's event table, sharded by id into 64 shards in a colocation group of
# its own: create_distributed_table('nodestore_node', 'id',
# colocate_with => 'none', shard_count => 64).
resource "citus_distributed_table" "nodestore_node" {
  # Distribute only once the workers are registered:
  # depends_on = [citus_cluster.example]

  table               = "public.nodestore_node"
  distribution_column = "id"
  shard_count         = 64
  colocate_with       = "none"

  # Creates the table with Sentry's shape when it does not exist yet. An
  # existing table is left as it is: this block is never compared with it.
  create_if_missing {
    column {
      name     = "id"
      type     = "varchar(40)"
      nullable = false
    }
    column {
      name     = "data"
      type     = "text"
      nullable = false
    }
    column {
      name     = "timestamp"
      type     = "timestamptz"
      nullable = false
    }
    primary_key = ["id"]
    indexes     = [["timestamp"]]
  }

  # Changing shard_count, the column or the colocation rewrites the table.
  timeouts {
    create = "2h"
    update = "6h"
  }
}

# An existing table keyed by the same ids (node_id varchar(40), the type of
# nodestore_node.id), colocated with nodestore_node so that joins on the id
# stay on one worker. It takes nodestore_node's shard count: shard_count must
# be left out when colocate_with names a table.
resource "citus_distributed_table" "nodestore_node_meta" {
  table               = "public.nodestore_node_meta"
  distribution_column = "node_id"

  # A reference rather than the literal "public.nodestore_node": it orders
  # the two resources, and the colocation target is checked once
  # nodestore_node is distributed.
  colocate_with = citus_distributed_table.nodestore_node.id
}
