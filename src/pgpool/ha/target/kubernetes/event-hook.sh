#!/bin/sh
# Written by shardform (pgpool_ha, kubernetes target): repmgr's
# event_notification_command on every node pod, run as
# `event-hook.sh NODE_ID EVENT SUCCESS`. After a promotion it tells pgpool at
# once which node is primary (pcp over the pgpool Service); a standby that
# follows the new primary is attached again. Fencing an old primary happens
# in that node's own pod (node-entrypoint.sh), which is the only place that
# can touch its data.
node_id="$1" event="$2" success="$3"
[ "$success" = 1 ] || exit 0
run=/shardform/run
[ -f "$run/pcppass" ] || printf '*:*:shardform:%s\n' "$(cat /shardform/secrets/pcp-password)" >"$run/pcppass"
chmod 600 "$run/pcppass"
pcp() { tool="$1"; shift; PCPPASSFILE="$run/pcppass" "/usr/sbin/pcp_$tool" -h "$GROUP-pgpool.$NAMESPACE.svc" -p 9898 -U shardform -w "$@"; }
case "$event" in
  repmgrd_failover_promote|standby_promote)
    pcp promote_node -n "$((node_id - 1))" >>"$run/event-hook.log" 2>&1 || true
    ;;
  repmgrd_failover_follow|standby_follow)
    pcp attach_node -n "$((node_id - 1))" >>"$run/event-hook.log" 2>&1 || true
    ;;
esac
exit 0
