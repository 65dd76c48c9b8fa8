terraform {
  required_providers {
    pgpool = {
      source  = "shardform/pgpool"
      version = "~> 0.1"
    }
  }
}

# The provider takes no arguments yet.
provider "pgpool" {}
