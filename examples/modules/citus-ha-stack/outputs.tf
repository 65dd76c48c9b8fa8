output "endpoint" {
  description = "Where applications connect: the coordinator group's pgpool, as host:port."
  value       = "${pgpool_ha.coordinator.endpoint_host}:${pgpool_ha.coordinator.endpoint_port}"
}

output "coordinator" {
  description = "The coordinator group's current primary (host, port): what the caller's `provider \"citus\"` block connects to. Nothing of Citus in it, so the provider can depend on it."
  value = {
    host = pgpool_ha.coordinator.primary_host
    port = pgpool_ha.coordinator.primary_port
  }
}

output "coordinator_node_id" {
  description = "Citus' node id of the coordinator."
  value       = citus_cluster.this.coordinator.node_id
}

output "workers" {
  description = "Per worker group: the primary Citus registers (host:port), its node id, and the shard placements of the listed tables it holds."
  value = {
    for w in citus_cluster.this.worker_node : w.name => {
      address = "${w.host}:${w.port}"
      node_id = w.node_id
      # From the tables, which are distributed after the cluster is read.
      shard_placements = sum(concat([0], [
        for t in citus_distributed_table.this : lookup({ for node, p in t.placements : node => p.shards }, "${w.host}:${w.port}", 0)
      ]))
    }
  }
}

output "groups" {
  description = "Every group's nodes as pgpool_ha reports them (name, host, port, role, status), keyed by group."
  value = merge(
    { coordinator = pgpool_ha.coordinator.nodes },
    { for name, g in pgpool_ha.worker : name => g.nodes },
  )
}

output "distributed_tables" {
  description = "Per distributed table: its shard count, colocation id and shards per worker (host:port)."
  value = {
    for name, t in citus_distributed_table.this : name => {
      shard_count      = t.shard_count
      colocation_id    = t.colocation_id
      shards_by_worker = { for node, p in t.placements : node => p.shards }
    }
  }
}

locals {
  # One pgAdmin server per node and per pgpool endpoint, grouped by
  # coordinator and worker; the role (primary or standby) as it was at the
  # last apply or refresh.
  pgadmin_groups = merge(
    { "coordinator" = pgpool_ha.coordinator },
    { for name, g in pgpool_ha.worker : name => g },
  )
  pgadmin_servers = flatten([
    for group_name in sort(keys(local.pgadmin_groups)) : concat(
      [{
        Name                 = "${group_name} endpoint (pgpool)"
        Group                = "${var.name}: ${group_name}"
        Host                 = local.pgadmin_groups[group_name].endpoint_host
        Port                 = local.pgadmin_groups[group_name].endpoint_port
        MaintenanceDB        = "postgres"
        Username             = "postgres"
        SSLMode              = "prefer"
        Comment              = "Pgpool-II of ${group_name}: writes go to the primary, reads are balanced."
        ConnectionParameters = { sslmode = "prefer", connect_timeout = 10 }
        Tags                 = [{ text = "pgpool", color = "#6c757d" }]
      }],
      [
        for node in local.pgadmin_groups[group_name].nodes : {
          Name                 = "${group_name} ${node.name} (${node.role})"
          Group                = "${var.name}: ${group_name}"
          Host                 = node.host
          Port                 = node.port
          MaintenanceDB        = "postgres"
          Username             = "postgres"
          SSLMode              = "prefer"
          Comment              = "${node.role} of ${group_name}, ${node.status} when Terraform last read it."
          ConnectionParameters = { sslmode = "prefer", connect_timeout = 10 }
          Tags                 = [{ text = node.role, color = node.role == "primary" ? "#198754" : "#0d6efd" }]
        }
      ],
    )
  ])
}

output "pgadmin_servers_json" {
  description = "The stack in pgAdmin's servers.json import format (`setup.py load-servers FILE`, or Tools > Import/Export Servers); no passwords."
  value       = jsonencode({ Servers = { for i, s in local.pgadmin_servers : tostring(i + 1) => s } })
}
