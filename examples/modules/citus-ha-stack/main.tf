# A highly available Citus stack: a coordinator group and one group per
# worker (each a repmgr primary with streaming standbys and Pgpool-II in
# front), the Citus membership of their current primaries, and the
# distributed tables the caller lists.

locals {
  password_set = nonsensitive(var.superuser_password != null)
}

resource "pgpool_ha" "coordinator" {
  name                    = "${var.name}-coordinator"
  target                  = var.target
  base_dir                = "${var.base_dir}/coordinator"
  standbys                = var.standbys
  synchronous_replication = var.synchronous_replication
  preload_libraries       = ["citus"]
  postgresql_settings     = var.postgresql_settings
  superuser_password      = var.superuser_password
  deletion_protection     = var.deletion_protection
}

resource "pgpool_ha" "worker" {
  for_each = toset(var.workers)

  name                    = "${var.name}-${each.key}"
  target                  = var.target
  base_dir                = "${var.base_dir}/${each.key}"
  standbys                = var.standbys
  synchronous_replication = var.synchronous_replication
  preload_libraries       = ["citus"]
  postgresql_settings     = var.postgresql_settings
  superuser_password      = var.superuser_password
  deletion_protection     = var.deletion_protection

  # A failover of this group repoints the coordinator's pg_dist_node by itself.
  citus {
    coordinator_host = pgpool_ha.coordinator.primary_host
    coordinator_port = pgpool_ha.coordinator.primary_port
    password         = var.superuser_password
  }
}

# The citus provider is configured by the caller from the `coordinator`
# output (see README): a per-resource coordinator_connection block would
# carry a sensitive attribute in a nested block, and Terraform 1.0 crashes
# rendering drift of such a block ("value is marked").
resource "citus_cluster" "this" {
  coordinator {
    host = pgpool_ha.coordinator.primary_host
    port = pgpool_ha.coordinator.primary_port
  }

  # Citus registers each group's current primary by its direct address.
  # worker_node, not worker: dynamic block labels must be known when
  # Terraform validates, and module variables never are.
  dynamic "worker_node" {
    for_each = pgpool_ha.worker
    content {
      name = worker_node.key
      host = worker_node.value.primary_host
      port = worker_node.value.primary_port
    }
  }

  dynamic "internode_auth" {
    for_each = local.password_set ? [1] : []
    labels   = ["postgres"]
    content {
      password = var.superuser_password
    }
  }

  rebalance {
    shard_transfer_mode = var.shard_transfer_mode
  }
}

resource "citus_distributed_table" "this" {
  for_each   = var.distributed_tables
  depends_on = [citus_cluster.this]

  table               = each.key
  distribution_column = each.value.distribution_column
  shard_count         = each.value.shard_count
  colocate_with       = each.value.colocate_with

  dynamic "create_if_missing" {
    for_each = length(each.value.columns) > 0 ? [each.value] : []
    content {
      dynamic "column" {
        for_each = create_if_missing.value.columns
        content {
          name     = column.value.name
          type     = column.value.type
          nullable = column.value.nullable
        }
      }
      primary_key = create_if_missing.value.primary_key
      indexes     = create_if_missing.value.indexes
    }
  }
}
