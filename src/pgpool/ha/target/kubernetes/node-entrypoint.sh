#!/bin/sh
# Written by shardform (pgpool_ha, kubernetes target): the entrypoint of
# every node pod of a group, run as postgres (uid 999). From the
# environment: GROUP, NAMESPACE, NODES (standbys + 1) and POD_NAME
# (GROUP-nodes-ORDINAL, from the downward API).
#
# - an empty data directory: the first pod (ordinal 0), when no other node
#   is primary, runs initdb and registers itself as repmgr's primary; any
#   other pod clones the current primary (found through the headless
#   Service) and registers as a standby; without a primary to clone from it
#   exits, and the kubelet starts it again;
# - data of an old primary while another node is primary: fenced
#   (standby.signal) and rejoined with pg_rewind, never a second primary;
# - then PostgreSQL and repmgrd run; the container ends when PostgreSQL does.
set -eu

bin=/usr/lib/postgresql/15/bin
config=/shardform/config
secrets=/shardform/secrets
run=/shardform/run
export PGDATA=/var/lib/postgresql/data/pgdata
# PostgreSQL's socket is in $run (unix_socket_directories): local clients look there.
export PGHOST="$run"

ordinal="${POD_NAME##*-}"
case "$ordinal" in
  ''|*[!0-9]*) echo "POD_NAME $POD_NAME does not end in an ordinal" >&2; exit 1 ;;
esac
say() { echo "$(date '+%F %T') $POD_NAME: $*"; }
host_of() { echo "$GROUP-nodes-$1.$GROUP-nodes.$NAMESPACE.svc"; }

mkdir -p "$run"
cp "$config/repmgr-$ordinal.conf" "$run/repmgr.conf"
repmgr="$bin/repmgr -f $run/repmgr.conf"
if [ -s "$secrets/pgpass" ]; then
  cp "$secrets/pgpass" "$run/pgpass"
  chmod 600 "$run/pgpass"
  export PGPASSFILE="$run/pgpass"
fi

# The host name of the node that is primary now, other than this one.
find_primary() {
  i=0
  while [ "$i" -lt "$NODES" ]; do
    if [ "$i" != "$ordinal" ]; then
      host="$(host_of "$i")"
      role="$("$bin/psql" -X -A -t -q -h "$host" -U postgres -d postgres \
        -c 'SELECT NOT pg_catalog.pg_is_in_recovery()' 2>/dev/null || true)"
      if [ "$role" = t ]; then
        echo "$host"
        return 0
      fi
    fi
    i=$((i + 1))
  done
  return 1
}

start_postgres() {
  "$bin/pg_ctl" -D "$PGDATA" -l "$run/postgres.log" -w -t 300 start
}

# The group's first primary (errexit does not hold inside a function run
# as a condition, hence every step's `|| return`).
init_primary() {
  "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null || return
  echo "include '$config/postgresql.node.conf'  # shardform pgpool_ha: every setting lives there" \
    >>"$PGDATA/postgresql.conf" || return
  start_postgres || return
  if [ -s "$secrets/superuser-password" ]; then
    # psql reads the password from the file itself: it is on no command line.
    printf '%s\n' "\\set password \`cat $secrets/superuser-password\`" "ALTER ROLE postgres PASSWORD :'password';" |
      "$bin/psql" -X -q -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null || return
  fi
  "$bin/psql" -X -q -U postgres -d postgres -v ON_ERROR_STOP=1 -c 'CREATE DATABASE repmgr' >/dev/null || return
  $repmgr primary register --force || return
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if primary="$(find_primary)"; then
    say "cloning $primary"
    rm -rf "$PGDATA"
    $repmgr -h "$primary" -U postgres -d repmgr standby clone --fast-checkpoint
    start_postgres
    $repmgr standby register --force
  elif [ "$ordinal" = 0 ]; then
    say "no primary found: initdb as the group's first primary"
    if ! init_primary; then
      # Half made is never left behind: the next start begins again.
      say "making the first primary failed: its data directory is removed"
      "$bin/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
      rm -rf "$PGDATA"
      exit 1
    fi
  else
    say "no primary to clone from yet; exiting so the kubelet tries again"
    exit 1
  fi
else
  if primary="$(find_primary)" && [ ! -f "$PGDATA/standby.signal" ]; then
    # An old primary: fenced first, so no restart brings it up writable.
    : >"$PGDATA/standby.signal"
    say "another node ($primary) is primary: fenced, rejoining it"
    $repmgr node rejoin -d "host=$primary user=postgres dbname=repmgr connect_timeout=2" --force-rewind --no-wait
  else
    start_postgres
  fi
fi

"$bin/repmgrd" -f "$run/repmgr.conf" --daemonize=false &
trap 'kill "$!" 2>/dev/null; "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop; exit 0' TERM INT
# repmgr may restart PostgreSQL (its service commands use pg_ctl): the
# container ends only when PostgreSQL stays down.
misses=0
while [ "$misses" -lt 3 ]; do
  if "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then misses=0; else misses=$((misses + 1)); fi
  sleep 5
done
say "PostgreSQL is down"
exit 1
