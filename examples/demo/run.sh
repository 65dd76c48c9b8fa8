#!/usr/bin/env bash
# The README demo: a Citus coordinator and two workers, each a local
# repmgr + Pgpool-II group, made a Citus cluster by `terraform apply` of main.tf.
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

mkdir -p "$DEMO/tf"
cp examples/demo/main.tf "$DEMO/tf/"
cd "$DEMO/tf"
# Whatever happens, the groups' processes are stopped and their files removed.
cleanup() {
  "$TERRAFORM" destroy -input=false -no-color -auto-approve >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT

"$TERRAFORM" init -input=false -no-color >/dev/null
"$TERRAFORM" apply -input=false -no-color -auto-approve

COORD_PORT=$("$TERRAFORM" output -raw coordinator_primary_port)
echo
echo "pg_dist_node on the coordinator's primary:"
psql -h 127.0.0.1 -p "$COORD_PORT" -U postgres -c \
  "SELECT nodeid, groupid, nodename, nodeport, noderole, shouldhaveshards FROM pg_dist_node ORDER BY nodeid"

echo "A second plan is empty (exit code 0 from -detailed-exitcode):"
"$TERRAFORM" plan -input=false -no-color -detailed-exitcode >/dev/null && echo "plan: no changes"
echo "Destroying the demo groups."
