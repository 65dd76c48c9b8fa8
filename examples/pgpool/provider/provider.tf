terraform {
  required_providers {
    pgpool = {
      source  = "shardform/pgpool"
      version = "~> 0.1"
    }
  }
}

# Only groups with target = "kubernetes" read the provider block; groups of
# the local target need none. The same settings as shardform/longhorn's:
# a kubeconfig file and context, host and credentials given directly, or
# nothing at all inside a pod (its service account).
provider "pgpool" {
  config_path    = "~/.kube/config"
  config_context = "prod"
}
