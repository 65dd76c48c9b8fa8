# The README demo: the seed's layout from one module. A Citus coordinator
# and two workers, each a highly available node group (a primary and a
# standby under repmgr, Pgpool-II in front) running as local processes,
# Citus membership over their primaries, and Sentry's nodestore_node in 64
# shards balanced over the workers. examples/demo/run.sh applies it.
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

module "citus" {
  source = "../modules/citus-ha-stack"

  name     = "demo"
  base_dir = var.base_dir
  workers  = ["worker-1", "worker-2"]
  standbys = 1

  # Fast moves for a demo; `auto` (logical replication) keeps writes flowing.
  shard_transfer_mode = "block_writes"
  deletion_protection = false
}

# The provider's own SQL goes to the coordinator group's current primary.
provider "citus" {
  host     = module.citus.coordinator.host
  port     = module.citus.coordinator.port
  username = "postgres"
}

output "endpoint" {
  description = "Where applications connect: the coordinator group's pgpool."
  value       = module.citus.endpoint
}

output "coordinator_port" {
  value = module.citus.coordinator.port
}

output "workers" {
  value = module.citus.workers
}

output "nodestore_node" {
  value = module.citus.distributed_tables["public.nodestore_node"]
}

output "pgadmin_servers_json" {
  value = module.citus.pgadmin_servers_json
}
