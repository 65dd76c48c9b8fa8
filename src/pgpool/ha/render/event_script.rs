//! repmgr's event hook: a shell script that keeps pgpool's primary in step
//! after a promotion, fences and rejoins the failed primary and, with a
//! `citus` block, repoints the coordinator.

use crate::pgpool::ha::layout::{repmgr_node_id, Layout, HOST, MAX_STANDBYS};
use crate::pgpool::ha::model::{CitusSpec, GroupSpec};

use super::names::{quote_sh, PCP_BINDIR, PCP_USER, PG_BINDIR, REPMGR_DB, SUPERUSER};

/// repmgr's `event_notification_command`, run as `SCRIPT NODE_ID EVENT SUCCESS`
/// on the node where the event happened. After a promotion it fences the old
/// primary first (it must never serve writes again), tells pgpool at once
/// which node is primary instead of waiting for its next checks, rejoins the
/// old primary in the background when `rejoin_failed_primary` is on, and, when
/// the group backs a Citus node, repoints the coordinator.
pub fn event_script(spec: &GroupSpec, layout: &Layout) -> String {
    let p = layout.pgpool();
    let (citus_function, citus_call) = match &spec.citus {
        Some(citus) => (
            citus_repoint_function(citus, layout),
            "    repoint_citus \"$node_id\"\n",
        ),
        None => (String::new(), ""),
    };
    let rejoin = if spec.failover.rejoin_failed_primary {
        "rejoin_old_primary"
    } else {
        ":"
    };
    format!(
        "#!/bin/sh\n\
         # Written by shardform (pgpool_ha). repmgr runs it for every event.\n\
         node_id=\"$1\" event=\"$2\" success=\"$3\"\n\
         [ \"$success\" = 1 ] || exit 0\n\
         {fencing}\
         {citus_function}\
         case \"$event\" in\n\
         \x20 repmgrd_failover_promote|standby_promote)\n\
         \x20   # The new primary is no longer fenced, if it ever was.\n\
         \x20   node_of \"$node_id\" && rm -f \"$dir/fenced\"\n\
         \x20   fence_old_primaries \"$node_id\" {rejoin} >>{log} 2>&1\n\
         \x20   promote_in_pgpool \"$node_id\" >>{log} 2>&1\n\
         {citus_call}\
         \x20   ;;\n\
         \x20 repmgrd_failover_follow|standby_follow)\n\
         \x20   # A standby now following the new primary: back into pgpool, if a\n\
         \x20   # health check detached it during the failover.\n\
         \x20   attach_in_pgpool \"$node_id\" >>{log} 2>&1 &\n\
         \x20   ;;\n\
         esac\n\
         exit 0\n",
        fencing = fencing_functions(layout),
        log = p.event_log().display(),
    )
}

/// Shell functions of the event script: `node_of ID` (the node's directory
/// and port), `fence_old_primaries NEW_ID THEN` and `rejoin_old_primary OLD_ID NEW_ID`.
///
/// Fencing: every other node with data and no `standby.signal` was primary
/// before this promotion. A `standby.signal` written at once makes any restart
/// of it (by hand, or of the whole group) come up read-only in recovery, and a
/// postmaster of it still running is stopped. `THEN` is `rejoin_old_primary`
/// or `:` (leave it fenced and down; the next plan shows its repair).
///
/// The rejoin runs detached (repmgrd waits for this script) under the node's
/// `rejoin.lock`, which apply also waits for: crash recovery read-only, a clean
/// stop (pg_rewind needs one), `repmgr node rejoin --force-rewind`, `standby
/// register`, and the pgpool attach only once the node streams on the new
/// primary's timeline. On any failure the node stays fenced and apply repairs it.
fn fencing_functions(layout: &Layout) -> String {
    let p = layout.pgpool();
    let cases: String = (0..=MAX_STANDBYS)
        .map(|slot| {
            let node = layout.node(slot);
            format!(
                "    {}) dir={} port={} ;;\n",
                repmgr_node_id(slot),
                node.dir.display(),
                node.port
            )
        })
        .collect();
    let ids: Vec<String> = (0..=MAX_STANDBYS).map(|s| repmgr_node_id(s).to_string()).collect();
    FENCING_TEMPLATE
        .replace("@CASES@", &cases)
        .replace("@IDS@", &ids.join(" "))
        .replace("@BIN@", PG_BINDIR)
        .replace("@PCP@", &format!(
            "PCPPASSFILE={} {PCP_BINDIR}/pcp_\"$tool\" -h {} -p {} -U {PCP_USER} -w",
            p.pcppass().display(),
            p.socket_dir().display(),
            p.pcp_port
        ))
        .replace("@SUPERUSER@", SUPERUSER)
        .replace("@REPMGR_DB@", REPMGR_DB)
        .replace("@TIMELINE@", CURRENT_TIMELINE_SQL)
        .replace("@LOG@", &p.event_log().display().to_string())
}

/// The primary's current timeline, from the name of its current WAL file.
pub const CURRENT_TIMELINE_SQL: &str = "SELECT ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::bigint::text AS timeline";

const FENCING_TEMPLATE: &str = r#"say() { echo "$(date '+%F %T') $*"; }
node_of() {
  case "$1" in
@CASES@    *) return 1 ;;
  esac
}
# pcp TOOL ARGS...: pcp_TOOL against this group's pgpool. pgpool backend
# ids are repmgr node ids minus one.
pcp() { tool="$1"; shift; @PCP@ "$@"; }
# Field N of pcp_node_info for a repmgr node id: 3 the status (1 and 2
# attached, 3 down), 7 the role.
pgpool_node_field() { pcp node_info -n "$(($1 - 1))" 2>/dev/null | cut -d ' ' -f "$2"; }
# Tells pgpool at once, unless it already found the new primary itself.
promote_in_pgpool() {
  [ "$(pgpool_node_field "$1" 7)" = primary ] || pcp promote_node -n "$(($1 - 1))" || true
}
# Attaches only a node pgpool has down (status 3 in pcp_node_info). pgpool
# handles any attach request, even for an attached node, as a failback, and
# ends every client session that starts a statement meanwhile. pgpool may be
# busy with the failover: asked again for up to 30 s.
attach_in_pgpool() {
  tries=0
  while :; do
    case "$(pgpool_node_field "$1" 3)" in
      1|2) return 0 ;;
      3) pcp attach_node -n "$(($1 - 1))" >/dev/null 2>&1 && return 0 ;;
    esac
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || { say "node$(($1 - 1)): pcp_attach_node kept failing; apply attaches it"; return 1; }
    sleep 1
  done
}
cluster_state() { @BIN@/pg_controldata "$1" 2>/dev/null | sed -n 's/^Database cluster state: *//p'; }
fence_old_primaries() {
  new="$1" then="$2"
  for old in @IDS@; do
    [ "$old" = "$new" ] && continue
    node_of "$old" || continue
    [ -f "$dir/data/PG_VERSION" ] && [ ! -f "$dir/data/standby.signal" ] && [ ! -f "$dir/data/backup_label" ] || continue
    # Held while apply clones or repairs the node, or an earlier event
    # (repmgr reports one promotion twice) rejoins it: not an old primary.
    flock -n "$dir/rejoin.lock" true 2>/dev/null || continue
    case "$(cluster_state "$dir/data")" in
      "in production"|"in crash recovery"|"shut down") ;;
      *) continue ;;
    esac
    # The marker outlives the signal file (single-user recovery lifts that
    # for a moment); apply never starts a fenced node as a primary.
    : >"$dir/fenced"
    : >"$dir/data/standby.signal"
    if @BIN@/pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
      if @BIN@/pg_ctl -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1; then
        say "node$((old - 1)) still ran as a primary: stopped"
      else
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
        say "node$((old - 1)) still ran as a primary and did not stop: killed its postmaster (pid $pid)"
      fi
    fi
    say "$event of node$((new - 1)): fenced node$((old - 1)), the old primary (standby.signal)"
    "$then" "$old" "$new"
  done
}
rejoin_old_primary() {
  node_of "$2" || return 0
  new_port="$port" new_sock="$dir/run"
  node_of "$1" || return 0
  old_node="node$(($1 - 1))" new_node="node$(($2 - 1))" backend="$(($1 - 1))" upstream="$2"
  (
    exec 9>>"$dir/rejoin.lock"
    flock -w 600 9 || { say "$old_node: rejoin lock busy, leaving it to apply"; exit 1; }
    # Whatever happens below, the node stays fenced until it is a standby.
    trap '[ -f "$dir/data/PG_VERSION" ] && : >"$dir/data/standby.signal"' EXIT
    repmgr="@BIN@/repmgr -f $dir/repmgr.conf"
    pg_ctl="@BIN@/pg_ctl -D $dir/data -l $dir/postgres.log -w -t 120"
    # Apply may have repaired it while this waited for the lock.
    if $pg_ctl status >/dev/null 2>&1; then
      trap - EXIT
      say "$old_node: running again (repaired meanwhile), nothing to rejoin"
      exit 0
    fi
    # Over each node's unix socket (trusted; no password needed): SQL PORT SOCKET_DIR QUERY.
    sql() { @BIN@/psql -X -A -t -q -h "$2" -p "$1" -U @SUPERUSER@ -d @REPMGR_DB@ -c "$3" 2>/dev/null; }
    # pg_rewind needs a clean shutdown. A crashed primary recovers in
    # single-user mode (as pg_rewind itself would): no socket, so no client
    # can write to it meanwhile, and it ends on its own timeline (recovery as
    # a standby could leave a control file that pg_rewind misreads).
    case "$(cluster_state "$dir/data")" in
      "shut down"|"shut down in recovery") ;;
      *)
        rm -f "$dir/data/standby.signal"
        @BIN@/postgres --single -D "$dir/data" -c archive_mode=off template1 </dev/null >>"$dir/rejoin.log" 2>&1 9>&-
        recovered=$?
        : >"$dir/data/standby.signal"
        if [ "$recovered" != 0 ]; then
          say "$old_node: crash recovery failed, it stays fenced and down (see $dir/rejoin.log); apply re-clones it"
          exit 1
        fi
        ;;
    esac
    # pg_rewind reads the new primary's timeline from its control file, which
    # only a checkpoint after the promotion brings up to date.
    sql "$new_port" "$new_sock" "CHECKPOINT" >/dev/null
    if ! $repmgr node rejoin -d "host=$new_sock port=$new_port user=@SUPERUSER@ dbname=@REPMGR_DB@ connect_timeout=2" \
        --force-rewind --no-wait >>"$dir/rejoin.log" 2>&1 9>&-; then
      say "$old_node: repmgr node rejoin failed, it stays fenced and down; apply re-clones it. $dir/rejoin.log ends:"
      tail -n 8 "$dir/rejoin.log"
      exit 1
    fi
    $pg_ctl status >/dev/null 2>&1 || $pg_ctl start >>"$dir/rejoin.log" 2>&1 9>&-
    $repmgr standby register --force --upstream-node-id="$upstream" >>"$dir/rejoin.log" 2>&1
    tries=0
    while [ "$tries" -lt 60 ]; do
      want=$(sql "$new_port" "$new_sock" "@TIMELINE@")
      got=$(sql "$port" "$dir/run" "SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming'")
      if [ -n "$got" ] && [ "$got" = "$want" ]; then
        attach_in_pgpool "$1"
        rm -f "$dir/fenced"
        say "$old_node: rewound and rejoined as a standby of $new_node, attached in pgpool"
        exit 0
      fi
      tries=$((tries + 1))
      sleep 1
    done
    say "$old_node: does not follow $new_node on its timeline (WAL past the promotion); read-only and detached, apply re-clones it"
    exit 1
  ) </dev/null >>@LOG@ 2>&1 &
}

"#;

/// The coordinator's `pg_dist_node` row for this group, repointed at the
/// promoted node: the primary row naming another node of the group (any
/// slot's port, so a missed event or a scaled group is covered) gets
/// `citus_update_node` with the new node's address. Same node id, so Citus
/// keeps the group's shards and `citus_cluster` keeps the worker's key.
/// psql takes every value as a variable (`:'var'`, quoted by psql); the
/// connection comes from the environment, the password from a pgpass file.
const REPOINT_SQL: &str = "SELECT pg_catalog.format('repointed node %s from %s:%s to %s:%s', nodeid, nodename, nodeport, :'new_host', :'new_port'),
       pg_catalog.citus_update_node(nodeid, :'new_host', :'new_port'::int, force => true, lock_cooldown => 10000)
  FROM pg_catalog.pg_dist_node
 WHERE nodename = :'group_host'
   AND nodeport = ANY (:'group_ports'::int[])
   AND nodeport <> :'new_port'::int
   AND noderole = 'primary';
";

/// Attempts (one a second, each connection given 3 s) before the script gives up.
pub const CITUS_REPOINT_ATTEMPTS: u32 = 30;

fn citus_repoint_function(citus: &CitusSpec, layout: &Layout) -> String {
    let p = layout.pgpool();
    let slots = 0..=MAX_STANDBYS;
    let ports: Vec<String> = slots
        .clone()
        .map(|s| layout.node(s).port.to_string())
        .collect();
    let cases: String = slots
        .map(|s| {
            format!(
                "    {}) new_port={} ;;\n",
                repmgr_node_id(s),
                layout.node(s).port
            )
        })
        .collect();
    let mut env = vec![
        format!("PGHOST={}", quote_sh(&citus.coordinator_host)),
        format!("PGPORT={}", citus.coordinator_port),
        format!("PGDATABASE={}", quote_sh(&citus.database)),
        format!("PGUSER={}", quote_sh(&citus.username)),
        "PGCONNECT_TIMEOUT=3".to_string(),
        "PGAPPNAME=shardform-citus-failover".to_string(),
    ];
    if citus.password.is_some() {
        env.push(format!(
            "PGPASSFILE={}",
            quote_sh(&p.citus_pgpass().display().to_string())
        ));
    }
    format!(
        "# The group backs a Citus node: point the coordinator's pg_dist_node at the\n\
         # new primary, in the background so that repmgrd is not held up, one at a time.\n\
         repoint_citus() {{\n\
         \x20 case \"$1\" in\n\
         {cases}\
         \x20   *) return 0 ;;\n\
         \x20 esac\n\
         \x20 (\n\
         \x20   exec 9>>{lock}\n\
         \x20   flock -w 120 9 2>/dev/null || true\n\
         \x20   attempt=0\n\
         \x20   while :; do\n\
         \x20     attempt=$((attempt + 1))\n\
         \x20     if out=$({env} \\\n\
         \x20       {PG_BINDIR}/psql -X -q -A -t -v ON_ERROR_STOP=1 \\\n\
         \x20       -v new_host={host} -v new_port=\"$new_port\" -v group_host={host} -v group_ports={ports} 2>&1 <<'SQL'\n\
         {REPOINT_SQL}\
         SQL\n\
         \x20     ); then\n\
         \x20       echo \"$(date '+%F %T') $event of node $1: ${{out:-pg_dist_node already names $new_port}} (attempt $attempt)\"\n\
         \x20       exit 0\n\
         \x20     fi\n\
         \x20     echo \"$(date '+%F %T') $event of node $1: attempt $attempt failed: $out\"\n\
         \x20     [ \"$attempt\" -lt {CITUS_REPOINT_ATTEMPTS} ] || {{ echo \"$(date '+%F %T') giving up: repoint the worker by hand with citus_update_node\"; exit 1; }}\n\
         \x20     sleep 1\n\
         \x20   done\n\
         \x20 ) </dev/null >>{log} 2>&1 &\n\
         }}\n\n",
        lock = p.citus_lock().display(),
        env = env.join(" "),
        host = quote_sh(HOST),
        ports = quote_sh(&format!("{{{}}}", ports.join(","))),
        log = p.citus_log().display(),
    )
}
