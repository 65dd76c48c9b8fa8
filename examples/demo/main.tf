# The README demo: Citus membership of local PostgreSQL instances that
# examples/demo/run.sh starts. Ports come from the script as variables.
terraform {
  required_providers {
    citus = {
      source  = "shardform/citus"
      version = "0.1.0"
    }
  }
}

variable "coordinator_port" {
  type = number
}

variable "worker1_port" {
  type = number
}

variable "worker2_port" {
  type = number
}

provider "citus" {
  host     = "127.0.0.1"
  port     = var.coordinator_port
  username = "postgres"
}

resource "citus_cluster" "demo" {
  coordinator {
    host = "127.0.0.1"
    port = var.coordinator_port
  }

  worker "w1" {
    host = "127.0.0.1"
    port = var.worker1_port
  }

  worker "w2" {
    host = "127.0.0.1"
    port = var.worker2_port
  }

  rebalance {
    shard_transfer_mode = "block_writes"
  }
}

output "workers" {
  value = { for name, w in citus_cluster.demo.worker : name => { node_id = w.node_id, group_id = w.group_id } }
}

output "citus_version" {
  value = citus_cluster.demo.citus_version
}
