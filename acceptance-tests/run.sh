#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: set-up, unit tests,
# protocol tests and acceptance tests against real Terraform 1.0.3,
# PostgreSQL 15, (when installed) Citus, and the Kubernetes API stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."

bash acceptance-tests/setup.sh

citus_tests=$(grep -ho 'require_citus("' acceptance-tests/*.rs | wc -l)
if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  skip_notice="SKIPPED ${citus_tests} Citus acceptance tests: citus is not installed"
  echo "$skip_notice"
fi

# One build of the executables and the test binaries, shared by every test.
cargo build --quiet --bins --tests
cargo test --lib --quiet
# The Kubernetes API stand-in's own tests, before the longhorn tests rely on it.
bash acceptance-tests/kube-standin/run-tests.sh
cargo test --test acceptance -- --test-threads=2

if [ -n "${skip_notice:-}" ]; then echo "$skip_notice"; fi
