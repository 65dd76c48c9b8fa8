#!/usr/bin/env bash
# The README demo: examples/modules/citus-ha-stack applied by main.tf: a
# Citus coordinator and two workers, each a local repmgr + Pgpool-II group,
# and Sentry's nodestore_node in 64 shards over them. KEEP=1 leaves it
# running and prints the command that tears it down.
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
cargo build --quiet --bins

DEMO="$(mktemp -d /tmp/shardform-demo.XXXXXX)"
chmod 755 "$DEMO"
export TF_VAR_base_dir="$DEMO/groups"

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

mkdir -p "$DEMO/tf/demo" "$DEMO/tf/modules"
cp examples/demo/main.tf "$DEMO/tf/demo/"
cp -r examples/modules/citus-ha-stack "$DEMO/tf/modules/"
cd "$DEMO/tf/demo"
# Whatever happens, the groups' processes are stopped and their files
# removed, unless KEEP=1 asks to leave a successful demo running.
cleanup() {
  status=$?
  if [ "${KEEP:-0}" = 1 ] && [ "$status" = 0 ]; then
    echo
    echo "KEEP=1: the demo keeps running. Tear it down with:"
    echo "  cd $DEMO/tf/demo && TF_CLI_CONFIG_FILE=$TF_CLI_CONFIG_FILE TF_VAR_base_dir=$TF_VAR_base_dir $TERRAFORM destroy -auto-approve && rm -rf $DEMO"
    return
  fi
  "$TERRAFORM" destroy -input=false -no-color -auto-approve >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT

"$TERRAFORM" init -input=false -no-color >/dev/null
"$TERRAFORM" apply -input=false -no-color -auto-approve

COORD_PORT=$("$TERRAFORM" output -raw coordinator_port)
echo
echo "pg_dist_node on the coordinator's primary:"
psql -h 127.0.0.1 -p "$COORD_PORT" -U postgres -c \
  "SELECT nodeid, groupid, nodename, nodeport, noderole, shouldhaveshards FROM pg_dist_node ORDER BY nodeid"
echo "nodestore_node's shards per worker (citus_shards):"
psql -h 127.0.0.1 -p "$COORD_PORT" -U postgres -c \
  "SELECT nodename, nodeport, count(*) AS shards FROM citus_shards WHERE table_name = 'nodestore_node'::regclass GROUP BY 1, 2 ORDER BY 2"
"$TERRAFORM" output -raw pgadmin_servers_json > "$DEMO/servers.json"
echo "pgAdmin's server list for the stack, $DEMO/servers.json (setup.py load-servers):"
python3 -c 'import json, sys
for s in json.load(open(sys.argv[1]))["Servers"].values(): print("  %-24s %-34s %s:%s" % (s["Group"], s["Name"], s["Host"], s["Port"]))' "$DEMO/servers.json"

echo "A second plan is empty (exit code 0 from -detailed-exitcode):"
"$TERRAFORM" plan -input=false -no-color -detailed-exitcode >/dev/null && echo "plan: no changes"
[ "${KEEP:-0}" = 1 ] || echo "Destroying the demo groups."
