terraform {
  required_providers {
    longhorn = {
      source  = "shardform/longhorn"
      version = "~> 0.1"
    }
  }
}

# The provider takes no arguments yet.
provider "longhorn" {}
