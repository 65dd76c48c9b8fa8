# Sentry's nodestore on Citus, as the seed layout has it:
#   create_distributed_table('nodestore_node', 'id', colocate_with => 'none', shard_count => 64)
# over six workers, balanced by the cluster. `terraform apply` alone builds it.
#
# The six workers are spelled out: Terraform 1.0.3 cannot take the labels of
# `worker "..."` blocks from a variable in a module (dynamic block labels must
# be known while the module is validated).

terraform {
  required_providers {
    citus = {
      source = "shardform/citus"
    }
  }
}

variable "coordinator" {
  description = "The coordinator as the workers reach it."
  type        = object({ host = string, port = number })
}

variable "workers" {
  description = "The six workers, as the coordinator reaches them."
  type        = list(object({ host = string, port = number }))

  validation {
    condition     = length(var.workers) == 6
    error_message = "The seed layout has exactly six workers."
  }
}

variable "shard_count" {
  description = "Shards of nodestore_node."
  type        = number
  default     = 64
}

variable "shard_transfer_mode" {
  description = "How the rebalancer moves shards: auto, force_logical or block_writes."
  type        = string
  default     = "auto"
}

variable "create_table_if_missing" {
  description = "Create nodestore_node with Sentry's shape when it does not exist yet (Sentry's migrations normally create it)."
  type        = bool
  default     = true
}

resource "citus_cluster" "this" {
  coordinator {
    host = var.coordinator.host
    port = var.coordinator.port
  }

  worker "worker-1" {
    host = var.workers[0].host
    port = var.workers[0].port
  }

  worker "worker-2" {
    host = var.workers[1].host
    port = var.workers[1].port
  }

  worker "worker-3" {
    host = var.workers[2].host
    port = var.workers[2].port
  }

  worker "worker-4" {
    host = var.workers[3].host
    port = var.workers[3].port
  }

  worker "worker-5" {
    host = var.workers[4].host
    port = var.workers[4].port
  }

  worker "worker-6" {
    host = var.workers[5].host
    port = var.workers[5].port
  }

  rebalance {
    shard_transfer_mode = var.shard_transfer_mode
  }
}

resource "citus_distributed_table" "nodestore_node" {
  depends_on = [citus_cluster.this]

  table               = "public.nodestore_node"
  distribution_column = "id"
  shard_count         = var.shard_count
  colocate_with       = "none"

  # getsentry/sentry src/sentry/nodestore/django/models.py
  dynamic "create_if_missing" {
    for_each = var.create_table_if_missing ? [1] : []
    content {
      column {
        name     = "id"
        type     = "character varying(40)"
        nullable = false
      }
      column {
        name     = "data"
        type     = "text"
        nullable = false
      }
      column {
        name     = "timestamp"
        type     = "timestamp with time zone"
        nullable = false
      }
      primary_key = ["id"]
      indexes     = [["timestamp"]]
    }
  }
}

output "shard_placements" {
  description = "Shards of nodestore_node per worker."
  value       = { for node, p in citus_distributed_table.nodestore_node.placements : node => p.shards }
}

output "colocation_id" {
  value = citus_distributed_table.nodestore_node.colocation_id
}
