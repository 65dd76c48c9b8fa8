terraform {
  required_providers {
    longhorn = {
      source  = "shardform/longhorn"
      version = "~> 0.1"
    }
  }
}

# Credentials as variables (Terraform Cloud), no kubeconfig file needed.
# Alternatively: config_path = "~/.kube/config" and config_context = "prod",
# or nothing at all inside a pod (its service account).
variable "kube_host" {
  type = string
}

variable "kube_token" {
  type      = string
  sensitive = true
}

variable "kube_ca" {
  type = string
}

provider "longhorn" {
  host                   = var.kube_host
  token                  = var.kube_token
  cluster_ca_certificate = var.kube_ca
  namespace              = "longhorn-system"
}
