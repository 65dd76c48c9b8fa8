#!/usr/bin/env bash
# Creates (or checks) the Python venv of the Kubernetes API stand-in with the pinned
# requirements.txt. Idempotent: does nothing when the venv already has them.
# Prints the venv's python path on request: setup.sh --print-python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/shardform/kube-standin-venv"
REQ="$HERE/requirements.txt"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the kube stand-in's Python venv at $VENV (requirements.txt)"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  "$VENV/bin/python" -c "import cryptography, yaml, celpy" 
  echo "$want" > "$VENV/.requirements.sha256"
fi
if [ "${1:-}" = "--print-python" ]; then echo "$VENV/bin/python"; fi
