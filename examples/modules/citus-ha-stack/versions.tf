terraform {
  # Terraform 1.0 and later; the write-only passwords need 1.11 and are not used here.
  required_version = ">= 1.0"

  required_providers {
    citus = {
      source  = "shardform/citus"
      version = ">= 0.1.0"
    }
    pgpool = {
      source  = "shardform/pgpool"
      version = ">= 0.1.0"
    }
  }
}
