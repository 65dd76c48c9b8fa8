#!/bin/sh
# Written by shardform (pgpool_ha, kubernetes target): the entrypoint of the
# pgpool pod, run as postgres (uid 999). pgpool.conf comes rendered from the
# ConfigMap, its backends being the node pods' names under the headless
# Service (GROUP-nodes-N.GROUP-nodes.NAMESPACE.svc); this script only makes
# the files pgpool wants private and writable, then runs pgpool in the
# foreground.
set -eu

config=/shardform/config
secrets=/shardform/secrets
run=/shardform/run

mkdir -p "$run/log"
cp "$config/pgpool.conf" "$config/pool_hba.conf" "$run/"
umask 077
hash="$(printf '%s' "$(cat "$secrets/pcp-password")" | md5sum | cut -d ' ' -f 1)"
printf 'shardform:%s\n' "$hash" >"$run/pcp.conf"
printf '*:*:shardform:%s\n' "$(cat "$secrets/pcp-password")" >"$run/pcppass"
cp "$secrets/pool_passwd" "$run/pool_passwd"
exec /usr/sbin/pgpool -n -f "$run/pgpool.conf" -F "$run/pcp.conf" -a "$run/pool_hba.conf"
