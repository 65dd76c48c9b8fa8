# The README demo: a Citus coordinator and two workers, each a highly
# available node group (a primary and a standby under repmgr, Pgpool-II in
# front) running as local processes, with Citus membership converged by
# citus_cluster. examples/demo/run.sh applies it.
terraform {
  required_providers {
    citus = {
      source  = "shardform/citus"
      version = "0.1.0"
    }
    pgpool = {
      source  = "shardform/pgpool"
      version = "0.1.0"
    }
  }
}

variable "base_dir" {
  description = "Directory under which every group keeps its data and processes' files."
  type        = string
}

resource "pgpool_ha" "coordinator" {
  name              = "coordinator"
  base_dir          = "${var.base_dir}/coordinator"
  standbys          = 1
  preload_libraries = ["citus"]

  deletion_protection = false
}

resource "pgpool_ha" "worker" {
  for_each = toset(["w1", "w2"])

  name     = each.key
  base_dir = "${var.base_dir}/${each.key}"
  standbys = 1

  # A failover of this group repoints the coordinator's pg_dist_node by itself.
  citus {
    coordinator_host = pgpool_ha.coordinator.primary_host
    coordinator_port = pgpool_ha.coordinator.primary_port
  }

  deletion_protection = false
}

# The provider's own SQL goes to the coordinator's primary, not through pgpool.
provider "citus" {
  host     = pgpool_ha.coordinator.primary_host
  port     = pgpool_ha.coordinator.primary_port
  username = "postgres"
}

resource "citus_cluster" "demo" {
  coordinator {
    host = pgpool_ha.coordinator.primary_host
    port = pgpool_ha.coordinator.primary_port
  }

  # Citus registers each group's current primary by its direct address.
  worker "w1" {
    host = pgpool_ha.worker["w1"].primary_host
    port = pgpool_ha.worker["w1"].primary_port
  }

  worker "w2" {
    host = pgpool_ha.worker["w2"].primary_host
    port = pgpool_ha.worker["w2"].primary_port
  }

  rebalance {
    shard_transfer_mode = "block_writes"
  }
}

output "coordinator_primary_port" {
  value = pgpool_ha.coordinator.primary_port
}

output "application_endpoint" {
  description = "Where applications connect: the coordinator group's pgpool."
  value       = "${pgpool_ha.coordinator.endpoint_host}:${pgpool_ha.coordinator.endpoint_port}"
}

output "workers" {
  value = { for name, w in citus_cluster.demo.worker : name => { node_id = w.node_id, address = "${w.host}:${w.port}" } }
}
