#!/usr/bin/env bash
# The README demo: a coordinator and two workers as local PostgreSQL 15
# instances, made a Citus cluster by `terraform apply` of main.tf.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

bash acceptance-tests/setup.sh

if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  cat >&2 <<'MSG'
The demo needs Citus, which Debian does not package and this project does not build.
Install Citus 13.2 for PostgreSQL 15 from the Citus project's packages
(packagecloud repository citusdata/community, package postgresql-15-citus-13.2),
then run this script again.
MSG
  exit 1
fi

TERRAFORM="${TF_ACC_TERRAFORM_PATH:-${XDG_CACHE_HOME:-$HOME/.cache}/shardform/terraform-1.0.3/terraform}"
PGBIN=/usr/lib/postgresql/15/bin
cargo build --quiet --bins

DEMO="$(mktemp -d /tmp/shardform-demo.XXXXXX)"
chmod 755 "$DEMO"
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" -eq 0 ]; then chown postgres "$DEMO"; fi

NODES=()
cleanup() {
  for node in "${NODES[@]}"; do as_postgres "$PGBIN/pg_ctl" -D "$DEMO/$node" -m fast stop >/dev/null 2>&1 || true; done
  rm -rf "$DEMO"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_node() { # name port
  local dir="$DEMO/$1"
  as_postgres "$PGBIN/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  as_postgres tee -a "$dir/postgresql.conf" >/dev/null <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO'
shared_preload_libraries = 'citus'
wal_level = logical
max_worker_processes = 32
max_replication_slots = 16
max_wal_senders = 16
CONF
  as_postgres "$PGBIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
  NODES+=("$1")
  echo "started $1 on 127.0.0.1:$2"
}

COORD_PORT=$(free_port); start_node coordinator "$COORD_PORT"
W1_PORT=$(free_port); start_node worker1 "$W1_PORT"
W2_PORT=$(free_port); start_node worker2 "$W2_PORT"

# The providers, installed into a filesystem mirror Terraform is pointed at.
MIRROR="$DEMO/mirror"
for p in citus pgpool longhorn; do
  dir="$MIRROR/registry.terraform.io/shardform/$p/0.1.0/linux_amd64"
  mkdir -p "$dir"
  cp "$ROOT/target/debug/terraform-provider-$p" "$dir/terraform-provider-${p}_v0.1.0"
done
cat > "$DEMO/cli.tfrc" <<CLI
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/shardform/*"]
  }
  direct {
    exclude = ["registry.terraform.io/shardform/*"]
  }
}
CLI
export TF_CLI_CONFIG_FILE="$DEMO/cli.tfrc" CHECKPOINT_DISABLE=1
export TF_VAR_coordinator_port="$COORD_PORT" TF_VAR_worker1_port="$W1_PORT" TF_VAR_worker2_port="$W2_PORT"

mkdir -p "$DEMO/tf"
cp examples/demo/main.tf "$DEMO/tf/"
cd "$DEMO/tf"
"$TERRAFORM" init -input=false -no-color >/dev/null
"$TERRAFORM" apply -input=false -no-color -auto-approve

echo
echo "pg_dist_node on the coordinator:"
psql -h 127.0.0.1 -p "$COORD_PORT" -U postgres -c \
  "SELECT nodeid, groupid, nodename, nodeport, noderole, shouldhaveshards FROM pg_dist_node ORDER BY nodeid"

echo "A second plan is empty (exit code 0 from -detailed-exitcode):"
"$TERRAFORM" plan -input=false -no-color -detailed-exitcode >/dev/null && echo "plan: no changes"
