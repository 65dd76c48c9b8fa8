# One highly available node group on this machine: a primary and two
# streaming standbys under repmgr, with Pgpool-II in front on port 6400.
resource "pgpool_ha" "coordinator" {
  name     = "coordinator"
  base_dir = "/var/lib/shardform/coordinator"
  standbys = 2

  # pgpool listens on port_base, PCP on port_base + 1, node N on
  # port_base + 2 + N (11 ports are reserved). Omit it to let the provider
  # choose free ports at create.
  port_base = 6400

  # Written into every node's configuration file outside the data directory,
  # so a failover, a rewind or a re-clone keeps them. Applied with a reload.
  postgresql_settings = {
    work_mem                   = "16MB"
    log_min_duration_statement = "500ms"
  }

  # A commit is acknowledged only once a standby has it.
  synchronous_replication = true

  pgpool_settings {
    load_balance_mode             = true
    disable_load_balance_on_write = "transaction"
    health_check_period           = 5
    num_init_children             = 32
    max_pool                      = 2
  }

  # repmgrd promotes a standby after about 2 + 3 * 2 = 8 seconds without
  # the primary.
  # The failed primary is always fenced (it comes back read-only); with
  # rejoin_failed_primary (the default) it is also rewound and rejoined as a
  # standby without Terraform.
  failover_settings {
    monitor_interval_secs = 2
    reconnect_attempts    = 3
    reconnect_interval    = 2
    rejoin_failed_primary = true
  }

  # TCP connections to the nodes and to the endpoint then need it (SCRAM).
  superuser_password = var.superuser_password

  # The default, true, refuses destroy. With false, destroy stops every
  # process of the group and deletes base_dir with all its data.
  deletion_protection = false
}

# Applications connect here; reads are balanced over the nodes.
output "coordinator_endpoint" {
  value = "${pgpool_ha.coordinator.endpoint_host}:${pgpool_ha.coordinator.endpoint_port}"
}

variable "superuser_password" {
  type      = string
  sensitive = true
}
