variable "name" {
  description = "Name of the stack: a prefix of every group's name and the pgAdmin server group."
  type        = string
  default     = "citus"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,29}$", var.name))
    error_message = "The name must start with a lower-case letter and hold at most 30 lower-case letters, digits and '-'."
  }
}

variable "target" {
  description = "Where the groups run. Only \"local\" (processes on the machine running Terraform) exists today; \"kubernetes\" comes with pgpool_ha's kubernetes target."
  type        = string
  default     = "local"

  validation {
    condition     = var.target == "local"
    error_message = "Only target = \"local\" is available; pgpool_ha's kubernetes target is not released yet."
  }
}

variable "base_dir" {
  description = "Directory under which each group keeps its data and files (local target): <base_dir>/<group>."
  type        = string
}

variable "workers" {
  description = "Names of the worker groups, one Citus worker each. Removing a name drains that worker, then removes it."
  type        = list(string)
  default     = ["worker-1", "worker-2"]

  validation {
    condition     = length(var.workers) > 0 && alltrue([for w in var.workers : can(regex("^[a-z][a-z0-9-]{0,29}$", w)) && w != "coordinator"])
    error_message = "Give at least one worker; each name must start with a lower-case letter, hold at most 30 lower-case letters, digits and '-', and not be \"coordinator\"."
  }
}

variable "standbys" {
  description = "Streaming standbys of every group (coordinator and workers), under repmgr."
  type        = number
  default     = 1
}

variable "synchronous_replication" {
  description = "Acknowledge a commit only once a standby has it, in every group (needs standbys >= 1)."
  type        = bool
  default     = false
}

variable "postgresql_settings" {
  description = "PostgreSQL parameters for every node of every group."
  type        = map(string)
  default     = {}
}

variable "superuser_password" {
  description = "Password of the postgres superuser. Null keeps trust authentication on loopback (the local target's default); set, every TCP connection uses SCRAM and Citus' own connections between nodes use it (internode_auth)."
  type        = string
  default     = null
  sensitive   = true
}

variable "distributed_tables" {
  description = <<-EOT
    Distributed tables, keyed by schema-qualified name. Every field is required (Terraform 1.0 has no
    optional object attributes): `columns` = [] means the table must exist already; otherwise it is
    created with those columns, `primary_key` and `indexes` when missing. The default is Sentry's
    nodestore_node in 64 shards.
  EOT
  type = map(object({
    distribution_column = string
    shard_count         = number
    colocate_with       = string
    columns             = list(object({ name = string, type = string, nullable = bool }))
    primary_key         = list(string)
    indexes             = list(list(string))
  }))
  default = {
    # getsentry/sentry src/sentry/nodestore/django/models.py
    "public.nodestore_node" = {
      distribution_column = "id"
      shard_count         = 64
      colocate_with       = "none"
      columns = [
        { name = "id", type = "character varying(40)", nullable = false },
        { name = "data", type = "text", nullable = false },
        { name = "timestamp", type = "timestamp with time zone", nullable = false },
      ]
      primary_key = ["id"]
      indexes     = [["timestamp"]]
    }
  }
}

variable "shard_transfer_mode" {
  description = "How the rebalancer moves shards: auto, force_logical or block_writes (fast, blocks writes to the moving shards)."
  type        = string
  default     = "auto"
}

variable "deletion_protection" {
  description = "Refuse to destroy the groups (their data). Set false before `terraform destroy`."
  type        = bool
  default     = true
}
