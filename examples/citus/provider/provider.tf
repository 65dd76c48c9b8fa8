terraform {
  required_providers {
    citus = {
      source  = "shardform/citus"
      version = "~> 0.1"
    }
  }
}

variable "citus_password" {
  description = "Password of the postgres superuser on every Citus node."
  type        = string
  sensitive   = true
}

# Defaults for every citus_* resource; a resource's own `coordinator_connection` block
# overrides them attribute by attribute.
provider "citus" {
  host     = "10.0.0.10"
  port     = 5432
  database = "postgres"
  username = "postgres"
  password = var.citus_password

  # The same credentials and TLS settings are used for every node the
  # provider connects to: the coordinator, the workers and their replicas.
  sslmode     = "verify-ca"
  sslrootcert = "/etc/citus/tls/ca.pem"
}
