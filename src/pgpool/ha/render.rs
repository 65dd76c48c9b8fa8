//! Every configuration file of a group, rendered as text. Pure functions:
//! the converge step writes them, the tests read them.

use std::fmt::Write as _;

use super::layout::{node_name, repmgr_node_id, Layout, NodeLayout, HOST, MAX_STANDBYS};
use crate::sql::Secret;
use super::model::{CitusSpec, GroupSpec};

/// PostgreSQL's programs (initdb, pg_ctl, repmgr, repmgrd).
pub const PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";
pub const PGPOOL_BIN: &str = "/usr/sbin/pgpool";
pub const PCP_BINDIR: &str = "/usr/sbin";
/// The superuser every tool connects as (initdb's bootstrap user).
pub const SUPERUSER: &str = "postgres";
/// repmgr keeps its metadata in a database of its own.
pub const REPMGR_DB: &str = "repmgr";
/// The PCP user the provider and the event script use.
pub const PCP_USER: &str = "shardform";

/// A word for `sh`: in single quotes, each `'` written as `'\''`.
pub fn quote_sh(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A value in single quotes for postgresql.conf, pgpool.conf and repmgr.conf.
pub fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The line appended to every data directory's postgresql.conf. Relative
/// paths resolve against PGDATA, so after a clone or rewind (which copy the
/// primary's postgresql.conf) each node still includes its own file.
pub const DATA_DIR_INCLUDE: &str =
    "include '../postgresql.node.conf'  # shardform pgpool_ha: every setting lives there\n";

/// `postgresql.node.conf`: the group's settings, the user's, then this node's own.
pub fn node_conf(spec: &GroupSpec, layout: &Layout, slot: usize) -> String {
    let node = layout.node(slot);
    let mut out = String::from(
        "# Written by shardform (pgpool_ha) on every apply; edits are overwritten.\n\
         # Outside the data directory so that a clone or a rejoin never replaces it.\n\n# Replication and failover\n",
    );
    let wal_level = if spec.uses_citus() {
        "logical"
    } else {
        "replica"
    };
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name} = {value}");
    };
    line("wal_level", quote_conf(wal_level));
    line("max_wal_senders", "16".into());
    line("max_replication_slots", "16".into());
    line("hot_standby", "on".into());
    line("wal_log_hints", "on".into());
    line("full_page_writes", "on".into());
    line(
        "shared_preload_libraries",
        quote_conf(&spec.shared_preload_libraries().join(",")),
    );
    line(
        "synchronous_standby_names",
        quote_conf(&synchronous_standby_names(spec)),
    );
    if spec.uses_citus() {
        // Citus' default `citus.node_conninfo` is `sslmode=require`, and its
        // CREATE EXTENSION turns TLS on only on the node it runs on (the
        // primary of the day): every node serves TLS, so a promoted standby
        // is reachable too.
        line("ssl", "on".into());
        line(
            "ssl_cert_file",
            quote_conf(&layout.tls_cert().display().to_string()),
        );
        line(
            "ssl_key_file",
            quote_conf(&layout.tls_key().display().to_string()),
        );
    }
    if !spec.postgresql_settings.is_empty() {
        out.push_str("\n# postgresql_settings\n");
        for (name, value) in &spec.postgresql_settings {
            let _ = writeln!(out, "{name} = {}", quote_conf(value));
        }
    }
    out.push_str("\n# This node\n");
    let _ = writeln!(out, "listen_addresses = {}", quote_conf(HOST));
    let _ = writeln!(out, "port = {}", node.port);
    let _ = writeln!(
        out,
        "unix_socket_directories = {}",
        quote_conf(&node.socket_dir().display().to_string())
    );
    let _ = writeln!(
        out,
        "hba_file = {}",
        quote_conf(&node.hba().display().to_string())
    );
    let _ = writeln!(
        out,
        "cluster_name = {}",
        quote_conf(&format!("{}-{}", spec.name, node.name()))
    );
    out
}

/// `ANY 1 (...)` over every node name: a node never waits for itself, so the
/// same value is right on whichever node is primary.
pub fn synchronous_standby_names(spec: &GroupSpec) -> String {
    if !spec.synchronous_replication || spec.standbys == 0 {
        return String::new();
    }
    let names: Vec<String> = spec
        .slots()
        .map(|s| format!("\"{}\"", node_name(s)))
        .collect();
    format!("ANY 1 ({})", names.join(", "))
}

/// Unix sockets are trusted: their directories (mode 0700) are reachable
/// only by the service user and root, and the provider, repmgr and
/// replication use them. TCP (loopback only) is trusted too without a
/// `superuser_password`, and asks for SCRAM with one.
pub fn pg_hba(spec: &GroupSpec) -> String {
    let tcp = if spec.superuser_password.is_some() {
        "scram-sha-256"
    } else {
        "trust"
    };
    format!(
        "# Written by shardform (pgpool_ha).\n\
         local all all trust\n\
         local replication all trust\n\
         host all all {HOST}/32 {tcp}\n\
         host replication all {HOST}/32 {tcp}\n"
    )
}

/// How repmgr (and so every standby's `primary_conninfo`, pg_basebackup and
/// pg_rewind) reaches a node: its unix socket, which needs no password.
pub fn node_conninfo(node: &NodeLayout, dbname: &str) -> String {
    format!(
        "host={} port={} user={SUPERUSER} dbname={dbname} connect_timeout=2",
        node.socket_dir().display(),
        node.port
    )
}

/// `pool_passwd`: the superuser's password in clear (`TEXT`), which pgpool
/// needs to answer the nodes' SCRAM for it, its health checks and its
/// streaming checks included. Fields are separated by `:`, so `\\` and `:`
/// are escaped with a backslash, as pgpool reads them. Mode 0600, read only
/// by the service user.
pub fn pool_passwd(password: &Secret) -> String {
    format!("{SUPERUSER}:TEXT{}\n", escape_field(password.expose()))
}

/// A field of a `:`-separated password file (libpq's pgpass, pgpool's
/// pool_passwd): `\\` and `:` escaped with a backslash.
pub fn escape_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The fields of such a line, escapes undone.
pub fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

/// The superuser's password from a `pool_passwd` written by [`pool_passwd`].
pub fn read_pool_password(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let fields = split_fields(line);
        let password = fields.get(1)?.strip_prefix("TEXT")?;
        (fields[0] == SUPERUSER).then(|| password.to_string())
    })
}

pub fn repmgr_conf(spec: &GroupSpec, layout: &Layout, slot: usize) -> String {
    let node = layout.node(slot);
    let conf = node.repmgr_conf().display().to_string();
    let data = node.data().display().to_string();
    let log = node.postgres_log().display().to_string();
    let pg_ctl = format!("{PG_BINDIR}/pg_ctl -D {data} -l {log} -w -t 120");
    let repmgr = format!("{PG_BINDIR}/repmgr -f {conf} --log-to-file");
    let f = &spec.failover;
    let entries: Vec<(&str, String)> = vec![
        ("node_id", repmgr_node_id(slot).to_string()),
        ("node_name", quote_conf(&node.name())),
        (
            "conninfo",
            quote_conf(&node_conninfo(&node, REPMGR_DB)),
        ),
        ("data_directory", quote_conf(&data)),
        ("pg_bindir", quote_conf(PG_BINDIR)),
        ("use_replication_slots", "yes".into()),
        ("failover", quote_conf("automatic")),
        ("priority", "100".into()),
        (
            "promote_command",
            quote_conf(&format!("{repmgr} standby promote")),
        ),
        (
            "follow_command",
            quote_conf(&format!("{repmgr} standby follow --upstream-node-id=%n")),
        ),
        (
            "service_start_command",
            quote_conf(&format!("{pg_ctl} start")),
        ),
        (
            "service_stop_command",
            quote_conf(&format!("{pg_ctl} -m fast stop")),
        ),
        (
            "service_restart_command",
            quote_conf(&format!("{pg_ctl} -m fast restart")),
        ),
        (
            "service_reload_command",
            quote_conf(&format!("{pg_ctl} reload")),
        ),
        ("monitor_interval_secs", f.monitor_interval_secs.to_string()),
        ("reconnect_attempts", f.reconnect_attempts.to_string()),
        ("reconnect_interval", f.reconnect_interval.to_string()),
        ("standby_reconnect_timeout", "60".into()),
        (
            "repmgrd_pid_file",
            quote_conf(&node.repmgrd_pid().display().to_string()),
        ),
        (
            "log_file",
            quote_conf(&node.repmgrd_log().display().to_string()),
        ),
        ("log_level", quote_conf("INFO")),
        (
            "event_notification_command",
            quote_conf(&format!(
                "{} %n %e %s",
                layout.pgpool().event_script().display()
            )),
        ),
    ];
    let mut out = String::from("# Written by shardform (pgpool_ha).\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

pub fn pgpool_conf(spec: &GroupSpec, layout: &Layout) -> String {
    let p = layout.pgpool();
    let s = &spec.pgpool;
    let dir = |path: std::path::PathBuf| quote_conf(&path.display().to_string());
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    let entries: Vec<(String, String)> = vec![
        (
            "backend_clustering_mode".into(),
            quote_conf("streaming_replication"),
        ),
        ("listen_addresses".into(), quote_conf(HOST)),
        ("port".into(), p.port.to_string()),
        ("socket_dir".into(), dir(p.socket_dir())),
        ("pcp_listen_addresses".into(), quote_conf(HOST)),
        ("pcp_port".into(), p.pcp_port.to_string()),
        ("pcp_socket_dir".into(), dir(p.socket_dir())),
        ("wd_ipc_socket_dir".into(), dir(p.socket_dir())),
        ("pid_file_name".into(), dir(p.pid())),
        ("logdir".into(), dir(p.logdir())),
        ("memqcache_oiddir".into(), dir(p.logdir().join("oiddir"))),
        ("use_watchdog".into(), "off".into()),
        ("log_destination".into(), quote_conf("stderr")),
        ("logging_collector".into(), "off".into()),
        ("enable_pool_hba".into(), "off".into()),
        // With a superuser password, pgpool authenticates the superuser from
        // pool_passwd (and uses it for its own checks, whose passwords are
        // left empty for that; without one the file is empty); other roles send their password in clear to
        // pgpool over loopback, which answers the nodes' SCRAM with it.
        ("pool_passwd".into(), dir(p.pool_passwd())),
        (
            "allow_clear_text_frontend_auth".into(),
            on_off(spec.superuser_password.is_some()),
        ),
        ("num_init_children".into(), s.num_init_children.to_string()),
        ("max_pool".into(), s.max_pool.to_string()),
        ("load_balance_mode".into(), on_off(s.load_balance_mode)),
        (
            "disable_load_balance_on_write".into(),
            quote_conf(&s.disable_load_balance_on_write),
        ),
        ("statement_level_load_balance".into(), "off".into()),
        ("sr_check_period".into(), s.sr_check_period.to_string()),
        ("sr_check_user".into(), quote_conf(SUPERUSER)),
        ("sr_check_password".into(), quote_conf("")),
        ("sr_check_database".into(), quote_conf("postgres")),
        (
            "health_check_period".into(),
            s.health_check_period.to_string(),
        ),
        (
            "health_check_timeout".into(),
            s.health_check_timeout.to_string(),
        ),
        ("health_check_user".into(), quote_conf(SUPERUSER)),
        ("health_check_password".into(), quote_conf("")),
        ("health_check_database".into(), quote_conf("postgres")),
        (
            "health_check_max_retries".into(),
            s.health_check_max_retries.to_string(),
        ),
        ("health_check_retry_delay".into(), "1".into()),
        ("connect_timeout".into(), "3000".into()),
        // repmgr is the failover authority: pgpool only detaches a node its
        // health checks find dead, and then looks for the primary repmgr
        // promotes, for ever. A session's read error or a node's shutdown
        // message (57P01: a restart, a fast or immediate stop,
        // pg_terminate_backend) only ends that session; with either on, a
        // planned restart of the primary would detach it (or a session's
        // load-balance standby) and leave pgpool without a primary.
        ("failover_command".into(), quote_conf("")),
        ("follow_primary_command".into(), quote_conf("")),
        ("failover_on_backend_error".into(), "off".into()),
        ("failover_on_backend_shutdown".into(), "off".into()),
        ("search_primary_node_timeout".into(), "0".into()),
        ("auto_failback".into(), "off".into()),
        // Off: standbys stream over unix sockets, so pgpool cannot match a
        // standby's upstream to a backend and would see no primary followed.
        // Fencing keeps an old primary from ever coming back writable.
        ("detach_false_primary".into(), "off".into()),
    ];
    let mut out = String::from("# Written by shardform (pgpool_ha); a change restarts pgpool.\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k} = {v}");
    }
    for slot in spec.slots() {
        let node = layout.node(slot);
        let _ = writeln!(out, "\nbackend_hostname{slot} = {}", quote_conf(HOST));
        let _ = writeln!(out, "backend_port{slot} = {}", node.port);
        let _ = writeln!(out, "backend_weight{slot} = 1");
        let _ = writeln!(
            out,
            "backend_data_directory{slot} = {}",
            quote_conf(&node.data().display().to_string())
        );
        let _ = writeln!(
            out,
            "backend_flag{slot} = {}",
            quote_conf("ALLOW_TO_FAILOVER")
        );
        let _ = writeln!(
            out,
            "backend_application_name{slot} = {}",
            quote_conf(&node.name())
        );
    }
    out
}

/// `pcp.conf`: the PCP user and the md5 of its password.
pub fn pcp_conf(md5_hex: &str) -> String {
    format!("# Written by shardform (pgpool_ha).\n{PCP_USER}:{md5_hex}\n")
}

/// `PCPPASSFILE` for the PCP tools (mode 0600).
pub fn pcppass(password: &str) -> String {
    format!("*:*:{PCP_USER}:{password}\n")
}

pub fn pool_hba() -> String {
    format!("# Written by shardform (pgpool_ha); unused while enable_pool_hba is off.\nlocal all all trust\nhost all all {HOST}/32 trust\n")
}

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

/// The coordinator's password file (mode 0600): `host:port:db:user:password`
/// with `\` and `:` escaped as libpq wants.
pub fn citus_pgpass(citus: &CitusSpec) -> Option<String> {
    let password = citus.password.as_deref()?;
    Some(format!(
        "{}:{}:{}:{}:{}\n",
        escape_field(&citus.coordinator_host),
        citus.coordinator_port,
        escape_field(&citus.database),
        escape_field(&citus.username),
        escape_field(password)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Value;

    fn spec() -> GroupSpec {
        let mut spec = GroupSpec::from_value(&Value::Null);
        spec.name = "g".into();
        spec.base_dir = "/srv/g".into();
        spec.port_base = Some(7000);
        spec
    }

    fn citus_spec() -> GroupSpec {
        let mut spec = spec();
        spec.citus = Some(CitusSpec {
            coordinator_host: "coord'; rm -rf /; echo '".into(),
            coordinator_port: 6432,
            database: "my db".into(),
            username: "post:gres".into(),
            password: Some(r"pa:ss\word".into()),
        });
        spec
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(quote_sh("plain"), "'plain'");
        assert_eq!(quote_sh("it's"), r"'it'\''s'");
    }

    #[test]
    fn event_script_without_citus_only_tells_pgpool() {
        let spec = spec();
        let script = event_script(&spec, &spec.layout());
        assert!(script.contains(r#"/usr/sbin/pcp_"$tool" -h /srv/g/pgpool/run -p 7001 -U shardform -w"#), "{script}");
        assert!(script.contains("    promote_in_pgpool \"$node_id\""), "{script}");
        assert!(!script.contains("repoint_citus"));
        assert_shell_syntax(&script);
    }

    fn assert_shell_syntax(script: &str) {
        let checked = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "sh -n: {}\n{script}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }

    #[test]
    fn a_promotion_fences_the_old_primary_before_anything_else() {
        let mut spec = spec();
        let script = event_script(&spec, &spec.layout());
        let fence = script.find("    fence_old_primaries \"$node_id\" rejoin_old_primary").unwrap();
        assert!(fence < script.find("    promote_in_pgpool \"$node_id\"").unwrap(), "{script}");
        assert!(script.contains("    1) dir=/srv/g/node0 port=7002 ;;\n"), "{script}");
        assert!(script.contains("    9) dir=/srv/g/node8 port=7010 ;;\n"), "{script}");
        // Servers started under the rejoin lock do not inherit it.
        let starts: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("$pg_ctl start") || l.contains("--force-rewind --no-wait") || l.contains("--single"))
            .collect();
        assert_eq!(starts.len(), 3, "{script}");
        assert!(starts.iter().all(|l| l.contains("9>&-")), "{starts:?}");
        spec.failover.rejoin_failed_primary = false;
        let script = event_script(&spec, &spec.layout());
        assert!(script.contains("    fence_old_primaries \"$node_id\" : >>"), "{script}");
        assert_shell_syntax(&script);
    }

    #[test]
    fn event_script_with_citus_repoints_through_psql_variables() {
        let spec = citus_spec();
        let script = event_script(&spec, &spec.layout());
        // Every value reaches psql quoted for the shell, as a variable or in the environment.
        assert!(
            script.contains(r"PGHOST='coord'\''; rm -rf /; echo '\'''"),
            "{script}"
        );
        assert!(
            script.contains("PGPORT=6432 PGDATABASE='my db' PGUSER='post:gres'"),
            "{script}"
        );
        assert!(script.contains("PGPASSFILE='/srv/g/pgpool/citus.pgpass'"));
        assert!(!script.contains("pa:ss"), "the password is in the script");
        assert!(script.contains("-v ON_ERROR_STOP=1"));
        assert!(
            script.contains("-v group_ports='{7002,7003,7004,7005,7006,7007,7008,7009,7010}'"),
            "{script}"
        );
        assert!(script.contains("    2) new_port=7003 ;;\n"));
        assert!(script.contains("citus_update_node(nodeid, :'new_host', :'new_port'::int"));
        assert!(script.contains(">>/srv/g/pgpool/citus-failover.log 2>&1 &"));
        // The function is defined before the case that calls it.
        assert!(
            script.find("repoint_citus() {").unwrap()
                < script.find("    repoint_citus \"$node_id\"").unwrap()
        );
        assert_shell_syntax(&script);
    }

    #[test]
    fn citus_password_file_escapes_separators() {
        let spec = citus_spec();
        let pgpass = citus_pgpass(spec.citus.as_ref().unwrap()).unwrap();
        assert_eq!(
            pgpass,
            "coord'; rm -rf /; echo ':6432:my db:post\\:gres:pa\\:ss\\\\word\n"
        );
        let mut no_password = spec.citus.clone().unwrap();
        no_password.password = None;
        assert_eq!(citus_pgpass(&no_password), None);
    }

    #[test]
    fn citus_nodes_serve_tls() {
        let spec = citus_spec();
        let conf = node_conf(&spec, &spec.layout(), 0);
        assert!(conf.contains("shared_preload_libraries = 'citus,repmgr'"));
        assert!(conf.contains("ssl = on\nssl_cert_file = '/srv/g/tls/server.crt'\nssl_key_file = '/srv/g/tls/server.key'\n"));
        let plain = self::spec();
        assert!(!node_conf(&plain, &plain.layout(), 0).contains("ssl"));
    }

    #[test]
    fn a_superuser_password_makes_tcp_ask_for_scram_and_feeds_pgpool() {
        let mut spec = spec();
        assert!(pg_hba(&spec).contains("host all all 127.0.0.1/32 trust\n"));
        assert!(pgpool_conf(&spec, &spec.layout()).contains("allow_clear_text_frontend_auth = off\n"));
        spec.superuser_password = Some(Secret::new("s3cr:et"));
        let hba = pg_hba(&spec);
        assert!(hba.contains("local all all trust\nlocal replication all trust\n"), "{hba}");
        assert!(hba.contains("host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n"), "{hba}");
        let conf = pgpool_conf(&spec, &spec.layout());
        assert!(conf.contains("pool_passwd = '/srv/g/pgpool/pool_passwd'\n"), "{conf}");
        assert!(conf.contains("allow_clear_text_frontend_auth = on\n"), "{conf}");
        // The password is in pool_passwd only, never in pgpool.conf, the event script or repmgr.conf.
        assert!(!conf.contains("s3cr"));
        assert!(!event_script(&spec, &spec.layout()).contains("s3cr"));
        assert!(!repmgr_conf(&spec, &spec.layout(), 1).contains("s3cr"));
        let file = pool_passwd(spec.superuser_password.as_ref().unwrap());
        assert_eq!(file, "postgres:TEXTs3cr\\:et\n");
        let tricky = Secret::new(r"a\b:c");
        assert_eq!(pool_passwd(&tricky), "postgres:TEXTa\\\\b\\:c\n");
        let dir = std::env::temp_dir().join(format!("shardform-pool-passwd-{}", std::process::id()));
        std::fs::write(&dir, &file).unwrap();
        assert_eq!(read_pool_password(&dir).as_deref(), Some("s3cr:et"));
        std::fs::write(&dir, pool_passwd(&tricky)).unwrap();
        assert_eq!(read_pool_password(&dir).as_deref(), Some(r"a\b:c"));
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(format!("{spec:?}").matches("s3cr").count(), 0, "Debug shows the password");
    }

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(quote_conf("it's"), "'it''s'");
        assert_eq!(quote_conf(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn node_conf_keeps_user_settings_and_owns_the_node_ones() {
        let mut spec = spec();
        spec.postgresql_settings
            .insert("work_mem".into(), "64MB".into());
        spec.preload_libraries = vec!["citus".into()];
        let conf = node_conf(&spec, &spec.layout(), 1);
        assert!(conf.contains("work_mem = '64MB'"));
        assert!(conf.contains("port = 7003"));
        assert!(conf.contains("shared_preload_libraries = 'citus,repmgr'"));
        assert!(conf.contains("wal_level = 'logical'"));
        assert!(conf.contains("unix_socket_directories = '/srv/g/node1/run'"));
        // The node's own settings come last, so nothing overrides them.
        assert!(conf.find("work_mem").unwrap() < conf.find("port = ").unwrap());
    }

    #[test]
    fn synchronous_names_cover_every_node() {
        let mut spec = spec();
        assert_eq!(synchronous_standby_names(&spec), "");
        spec.synchronous_replication = true;
        assert_eq!(
            synchronous_standby_names(&spec),
            "ANY 1 (\"node0\", \"node1\", \"node2\")"
        );
    }

    #[test]
    fn pgpool_lists_one_backend_per_slot_and_defers_to_repmgr() {
        let spec = spec();
        let conf = pgpool_conf(&spec, &spec.layout());
        assert!(conf.contains("backend_port2 = 7004"));
        assert!(!conf.contains("backend_port3"));
        assert!(conf.contains("failover_on_backend_error = off"));
        assert!(conf.contains("failover_on_backend_shutdown = off"));
        assert!(conf.contains("search_primary_node_timeout = 0"));
        assert!(conf.contains("backend_application_name0 = 'node0'"));
    }

    #[test]
    fn repmgr_conf_has_per_node_pid_file_and_full_paths() {
        let spec = spec();
        let conf = repmgr_conf(&spec, &spec.layout(), 2);
        assert!(conf.contains("node_id=3\n"));
        assert!(conf.contains("repmgrd_pid_file='/srv/g/node2/repmgrd.pid'"));
        assert!(conf.contains(
            "promote_command='/usr/lib/postgresql/15/bin/repmgr -f /srv/g/node2/repmgr.conf"
        ));
        assert!(conf.contains("conninfo='host=/srv/g/node2/run port=7004 user=postgres dbname=repmgr"));
    }
}
