resource "citus_cluster" "example" {
  # The coordinator as the workers reach it.
  coordinator {
    host = "10.0.0.10"
    port = 5432
  }

  # Workers are keyed by name: removing one never renames the others.
  worker "worker-1" {
    host = "10.0.0.11"
    port = 5432
  }

  worker "worker-2" {
    host = "10.0.0.12"
    port = 5432

    # A hot standby of worker-2, registered as a secondary in its group.
    read_replica {
      host = "10.0.0.22"
      port = 5432
    }
  }

  worker "worker-3" {
    host = "10.0.0.13"
    port = 5432
  }

  rebalance {
    enabled             = true
    strategy            = "by_disk_size"
    shard_transfer_mode = "auto"
  }

  # Each wait for a rebalance job (adopted, drain, final) gets this long.
  timeouts {
    create = "1h"
    update = "3h"
  }
}
