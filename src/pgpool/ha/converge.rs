//! Bringing a group to what the plan asks for, and repairing it: the same
//! steps serve create, update and repair, each checking the live state first,
//! so an interrupted apply is picked up by the next one.
//!
//! Order: files, the primary (bootstrap, or the one repmgr promoted), each
//! standby (start, rejoin, re-clone, clone), surplus nodes, repmgrd, pgpool,
//! then pgpool's view reconciled with repmgr's (attach, promote).

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::framework::{poll_until, AttrPath, Context, Diagnostics, WaitError};
use crate::sql::{quote_ident, quote_literal};

use super::layout::{node_name, repmgr_node_id, Layout, NodeLayout, MARKER};
use super::local::{
    self, io_error, live_pid, make_dir, run, spawn_detached, write_file, LocalError,
};
use super::model::GroupSpec;
use super::observe::{
    self, connect_node, GroupLive, STATUS_FENCED, STATUS_NOT_REPLICATING, STATUS_UP,
};
use super::render::{self, PCP_BINDIR, PGPOOL_BIN, PG_BINDIR, REPMGR_DB, SUPERUSER};

/// Why a convergence stopped; one diagnostic, with a path when one attribute explains it.
#[derive(Debug)]
pub struct Failure {
    pub path: Option<AttrPath>,
    pub summary: String,
    pub detail: String,
}

impl Failure {
    pub fn at(path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            path: Some(path),
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    pub fn general(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            path: None,
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    pub fn report(self, diags: &mut Diagnostics) {
        match self.path {
            Some(path) => diags.error_at(path, self.summary, self.detail),
            None => diags.error(self.summary, self.detail),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.summary == STOPPED
    }
}

const STOPPED: &str = "Apply interrupted";

impl From<LocalError> for Failure {
    fn from(e: LocalError) -> Self {
        Failure::general("Local command failed", e.to_string())
    }
}

pub(super) fn step(what: &str) -> impl FnOnce(LocalError) -> Failure + '_ {
    move |e| Failure::general(format!("Cannot {what}"), e.to_string())
}

pub(super) fn wait_failure<E: std::fmt::Display>(what: &str, e: WaitError<E>) -> Failure {
    match e {
        WaitError::Stopped => Failure::general(
            STOPPED,
            format!("Terraform asked the provider to stop while waiting for {what}. The group's processes keep running; the next apply continues."),
        ),
        WaitError::TimedOut(after) => Failure::general("Timed out", format!("Waited {after:?} for {what}.")),
        WaitError::Failed(e) => Failure::general(format!("Failed waiting for {what}"), e.to_string()),
    }
}

/// A deadline shared by every wait of one apply.
pub struct Deadline {
    pub until: Instant,
}

impl Deadline {
    pub fn new(timeout: Duration) -> Self {
        Deadline {
            until: Instant::now() + timeout,
        }
    }
    pub(super) fn left(&self) -> Duration {
        self.until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    }
    /// A single command's time: what is left, capped so one hung tool cannot eat it all silently.
    pub(super) fn command(&self) -> Duration {
        self.left().min(Duration::from_secs(600))
    }
}

pub(super) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn pg(program: &str) -> std::path::PathBuf {
    Path::new(PG_BINDIR).join(program)
}

pub(super) fn check_stop(ctx: &Context) -> Result<(), Failure> {
    if ctx.stop.is_stopped() {
        return Err(wait_failure::<String>("the next step", WaitError::Stopped));
    }
    Ok(())
}

/// The base directory: created when missing; refused when it holds anything
/// but this group, so an apply never writes into someone else's files.
fn prepare_base(spec: &GroupSpec) -> Result<(), Failure> {
    let base = &spec.base_dir;
    let marker = base.join(MARKER);
    if base.exists() && !marker.exists() {
        let not_empty = std::fs::read_dir(base)
            .map_err(io_error(base, "read"))
            .map_err(Failure::from)?
            .next()
            .is_some();
        if not_empty {
            return Err(Failure::at(
                AttrPath::root("base_dir"),
                "Base directory in use",
                format!("{} is not empty and holds no pgpool_ha group. Choose an empty or missing directory.", base.display()),
            ));
        }
    }
    make_dir(base).map_err(|e| {
        Failure::at(
            AttrPath::root("base_dir"),
            "Cannot create the base directory",
            e.to_string(),
        )
    })?;
    write_file(&marker, &format!("{}\n", spec.name), 0o600)?;
    Ok(())
}

/// What `prepare_pgpool_files` changed.
struct PgpoolFiles {
    /// pgpool.conf: pgpool must restart.
    conf_changed: bool,
    /// The superuser's password (pool_passwd written or removed).
    password_changed: bool,
}

/// The PCP password: made once, kept in files only the service user reads.
async fn prepare_pgpool_files(spec: &GroupSpec, layout: &Layout) -> Result<PgpoolFiles, Failure> {
    let p = layout.pgpool();
    make_dir(&p.dir)?;
    make_dir(&p.socket_dir())?;
    make_dir(&p.logdir())?;
    if !p.pcppass().exists() || !p.pcp_conf().exists() {
        let password = local::random_hex(16)?;
        write_file(
            &p.pcp_conf(),
            &render::pcp_conf(&local::md5_hex(&password).await?),
            0o600,
        )?;
        write_file(&p.pcppass(), &render::pcppass(&password), 0o600)?;
    }
    write_file(&p.hba(), &render::pool_hba(), 0o600)?;
    // Empty without a password: pgpool then finds no entry, quietly, where a
    // missing file makes it warn on every health check.
    let pool_passwd = spec.superuser_password.as_ref().map(render::pool_passwd).unwrap_or_default();
    let password_changed = write_file(&p.pool_passwd(), &pool_passwd, 0o600)?;
    match spec.citus.as_ref().and_then(render::citus_pgpass) {
        Some(pgpass) => {
            write_file(&p.citus_pgpass(), &pgpass, 0o600)?;
        }
        None if p.citus_pgpass().exists() => {
            std::fs::remove_file(p.citus_pgpass())
                .map_err(io_error(&p.citus_pgpass(), "remove"))
                .map_err(Failure::from)?;
        }
        None => {}
    }
    write_file(
        &p.event_script(),
        &render::event_script(spec, layout),
        0o700,
    )?;
    let conf_changed = write_file(&p.conf(), &render::pgpool_conf(spec, layout), 0o600)?;
    Ok(PgpoolFiles {
        conf_changed,
        password_changed,
    })
}

/// A fenced old primary that lost its `standby.signal` (single-user recovery
/// interrupted) gets it back before anything starts it: it must come up
/// read-only, whoever starts it.
fn refence(layout: &Layout, slots: &[usize], live: &GroupLive) -> Result<(), Failure> {
    for &slot in slots {
        let node = layout.node(slot);
        let running = live.nodes.get(&slot).is_some_and(|n| n.running);
        let signal = node.data().join("standby.signal");
        if node.fenced_marker().exists() && node.has_data() && !running && !signal.exists() {
            log::warn!("{} is fenced but lost its standby.signal: restoring it", node.name());
            write_file(&signal, "", 0o600)?;
        }
    }
    Ok(())
}

/// The `postgres` role's password, set on the primary (standbys replicate
/// it) as a SCRAM verifier computed here, so the clear password never
/// reaches the server, its logs or `pg_stat_activity`. Set on every converge
/// (cheap, and an apply interrupted between writing pool_passwd and this
/// still ends with both agreeing); removed when no longer configured.
async fn ensure_superuser_password(spec: &GroupSpec, node: &NodeLayout) -> Result<(), Failure> {
    let client = connect_node(node).await.ok_or_else(|| {
        Failure::general("Cannot connect to the primary", format!("{} does not answer on its socket.", node.name()))
    })?;
    let query_failed = |e: tokio_postgres::Error| {
        Failure::general("Cannot set the superuser password", crate::sql::SqlError::from(e).message)
    };
    let rows = observe::simple_rows(
        &client,
        "SELECT (rolpassword IS NOT NULL)::text AS has FROM pg_catalog.pg_authid WHERE rolname = 'postgres'",
    )
    .await
    .map_err(query_failed)?;
    let has_password = rows.first().and_then(|r| r.get("has").cloned().flatten()).as_deref() == Some("true");
    let statement = match &spec.superuser_password {
        Some(password) => {
            let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
            format!("ALTER ROLE {} PASSWORD {}", quote_ident(SUPERUSER), quote_literal(&verifier))
        }
        None if has_password => format!("ALTER ROLE {} PASSWORD NULL", quote_ident(SUPERUSER)),
        _ => return Ok(()),
    };
    log::info!("setting the password of {SUPERUSER} on {}", node.name());
    // Not even the verifier goes to the server log or pg_stat_statements. A
    // SET acts from the next statement: a round trip of its own first.
    client
        .batch_execute(
            "SET log_statement = 'none'; SET log_min_duration_statement = -1; \
             SET log_min_error_statement = panic; SET pg_stat_statements.track_utility = off",
        )
        .await
        .map_err(query_failed)?;
    client.batch_execute(&statement).await.map_err(query_failed)
}

/// With Citus, every node serves TLS (see `render::node_conf`): one
/// self-signed certificate for the group, made once. Nobody verifies it
/// (`sslmode=require` only encrypts); a user who wants a real one sets
/// `ssl_cert_file` and `ssl_key_file` in `postgresql_settings`.
fn prepare_tls(spec: &GroupSpec, layout: &Layout) -> Result<(), Failure> {
    if !spec.uses_citus() || (layout.tls_cert().exists() && layout.tls_key().exists()) {
        return Ok(());
    }
    make_dir(&layout.tls_dir())?;
    let made = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        super::layout::HOST.to_string(),
    ])
    .map_err(|e| Failure::general("Cannot create the group's TLS certificate", e.to_string()))?;
    write_file(&layout.tls_key(), &made.signing_key.serialize_pem(), 0o600)?;
    write_file(&layout.tls_cert(), &made.cert.pem(), 0o644)?;
    Ok(())
}

/// Writes a node's files; true when its PostgreSQL settings changed.
fn write_node_files(spec: &GroupSpec, layout: &Layout, slot: usize) -> Result<bool, Failure> {
    let node = layout.node(slot);
    make_dir(&node.dir)?;
    make_dir(&node.socket_dir())?;
    let conf_changed = write_file(
        &node.node_conf(),
        &render::node_conf(spec, layout, slot),
        0o600,
    )?;
    let hba_changed = write_file(&node.hba(), &render::pg_hba(spec), 0o600)?;
    write_file(
        &node.repmgr_conf(),
        &render::repmgr_conf(spec, layout, slot),
        0o600,
    )?;
    Ok(conf_changed || hba_changed)
}

pub(super) async fn pg_ctl(
    node: &NodeLayout,
    action: &str,
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let data = node.data();
    let log = node.postgres_log();
    let mut args: Vec<&OsStr> = vec![
        os("-D"),
        data.as_os_str(),
        os("-l"),
        log.as_os_str(),
        os("-w"),
        os("-t"),
        os("120"),
    ];
    if action != "start" && action != "reload" {
        args.extend([os("-m"), os("fast")]);
    }
    args.push(os(action));
    run(&pg("pg_ctl"), &args, &[], deadline.command()).await
}

pub(super) async fn repmgr(
    node: &NodeLayout,
    args: &[&str],
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let conf = node.repmgr_conf();
    let mut all: Vec<&OsStr> = vec![os("-f"), conf.as_os_str()];
    all.extend(args.iter().map(|a| os(a)));
    run(&pg("repmgr"), &all, &[], deadline.command()).await
}

async fn start_node(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    if live_pid(&node.postmaster_pid(), "postgres").is_some() {
        return Ok(());
    }
    log::info!("starting PostgreSQL {}", node.name());
    pg_ctl(node, "start", deadline)
        .await
        .map_err(step(&format!("start {}", node.name())))?;
    Ok(())
}

async fn stop_node(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    if live_pid(&node.postmaster_pid(), "postgres").is_none() {
        return Ok(());
    }
    log::info!("stopping PostgreSQL {}", node.name());
    pg_ctl(node, "stop", deadline)
        .await
        .map_err(step(&format!("stop {}", node.name())))?;
    Ok(())
}

async fn stop_repmgrd(node: &NodeLayout) {
    if let Some(pid) = live_pid(&node.repmgrd_pid(), "repmgrd") {
        local::terminate(pid, "repmgrd", Duration::from_secs(10)).await;
    }
}

/// initdb, the include line, start, repmgr's database, `primary register`.
async fn bootstrap_primary(
    spec: &GroupSpec,
    layout: &Layout,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(0);
    log::info!("group {}: initdb of {}", spec.name, node.name());
    if !node.has_data() {
        if node.data().exists() {
            // A half-made data directory from an interrupted initdb.
            std::fs::remove_dir_all(node.data())
                .map_err(io_error(&node.data(), "remove"))
                .map_err(Failure::from)?;
        }
        let data = node.data();
        run(
            &pg("initdb"),
            &[
                os("-D"),
                data.as_os_str(),
                os("-U"),
                os(SUPERUSER),
                os("-A"),
                os("trust"),
                os("-E"),
                os("UTF8"),
                os("--locale=C.UTF-8"),
                os("--no-instructions"),
            ],
            &[],
            deadline.command(),
        )
        .await
        .map_err(step("initialise the primary's data directory"))?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(io_error(&conf, "read"))
            .map_err(Failure::from)?;
        text.push_str(render::DATA_DIR_INCLUDE);
        write_file(&conf, &text, 0o600)?;
    }
    start_node(&node, deadline).await?;
    let client = connect_node(&node).await.ok_or_else(|| {
        Failure::general(
            "Cannot connect to the new primary",
            format!(
                "{} did not accept a connection on port {}.",
                node.name(),
                node.port
            ),
        )
    })?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&REPMGR_DB],
        )
        .await
        .map_err(|e| {
            Failure::general(
                "Cannot query the new primary",
                crate::sql::SqlError::from(e).message,
            )
        })?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(REPMGR_DB)))
            .await
            .map_err(|e| {
                Failure::general(
                    "Cannot create repmgr's database",
                    crate::sql::SqlError::from(e).message,
                )
            })?;
    }
    repmgr(&node, &["primary", "register", "--force"], deadline)
        .await
        .map_err(step("register the primary with repmgr"))?;
    Ok(())
}

/// A fresh copy of the primary (removing a broken data directory first).
async fn clone_standby(
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    let source = layout.node(primary);
    stop_node(&node, deadline).await.ok();
    if node.data().exists() {
        log::info!(
            "removing the old data directory of {} before cloning it again",
            node.name()
        );
        std::fs::remove_dir_all(node.data())
            .map_err(io_error(&node.data(), "remove"))
            .map_err(Failure::from)?;
    }
    log::info!("cloning {} from {}", node.name(), source.name());
    let port = source.port.to_string();
    let socket = source.socket_dir().display().to_string();
    repmgr(
        &node,
        &[
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            SUPERUSER,
            "-d",
            REPMGR_DB,
            "standby",
            "clone",
            "--fast-checkpoint",
        ],
        deadline,
    )
    .await
    .map_err(step(&format!(
        "clone {} from {}",
        node.name(),
        source.name()
    )))?;
    start_node(&node, deadline).await?;
    register_standby(&node, primary, deadline).await
}

async fn register_standby(
    node: &NodeLayout,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let upstream = repmgr_node_id(primary).to_string();
    repmgr(
        node,
        &[
            "standby",
            "register",
            "--force",
            &format!("--upstream-node-id={upstream}"),
        ],
        deadline,
    )
    .await
    .map_err(step(&format!("register {} with repmgr", node.name())))?;
    Ok(())
}

/// An old primary (or a standby on a dead timeline) back as a standby of
/// `primary`: `node rejoin --force-rewind`, and a fresh clone when the rewind
/// cannot be done (say, the node was never shut down cleanly) or the rejoined
/// node does not follow (repmgr judged from the last checkpoint that no
/// rewind was needed, but the node has WAL past the promotion).
async fn rejoin(
    ctx: &Context,
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    stop_node(&node, deadline).await?;
    // pg_rewind reads the primary's timeline from its control file, which only
    // a checkpoint after a promotion brings up to date.
    if let Some(client) = connect_node(&layout.node(primary)).await {
        if let Err(e) = client.simple_query("CHECKPOINT").await {
            log::warn!("CHECKPOINT on {} before the rewind: {e}", node_name(primary));
        }
    }
    let conninfo = render::node_conninfo(&layout.node(primary), REPMGR_DB);
    log::info!(
        "rejoining {} to {} with pg_rewind",
        node.name(),
        node_name(primary)
    );
    match repmgr(
        &node,
        &[
            "node",
            "rejoin",
            "-d",
            &conninfo,
            "--force-rewind",
            "--no-wait",
            "--verbose",
        ],
        deadline,
    )
    .await
    {
        Ok(_) => {
            start_node(&node, deadline).await?;
            register_standby(&node, primary, deadline).await?;
            if follows_after_rejoin(ctx, layout, slot, primary, deadline.left().min(Duration::from_secs(120))).await {
                return Ok(());
            }
            check_stop(ctx)?;
            log::warn!(
                "{} does not follow {} after the rejoin (it has WAL past the promotion): cloning it again",
                node.name(),
                node_name(primary)
            );
            clone_standby(layout, slot, primary, deadline).await
        }
        Err(e) => {
            log::warn!(
                "rejoin of {} failed, cloning it again instead: {e}",
                node.name()
            );
            clone_standby(layout, slot, primary, deadline).await
        }
    }
}

/// True when the node's control file says it stopped while running as a
/// primary (`in production`): an old primary killed in a failover.
async fn crashed_as_primary(node: &NodeLayout, deadline: &Deadline) -> bool {
    let data = node.data();
    let out = run(&pg("pg_controldata"), &[data.as_os_str()], &[], deadline.command()).await;
    out.is_ok_and(|text| {
        text.lines()
            .any(|l| l.starts_with("Database cluster state:") && l.trim_end().ends_with("in production"))
    })
}

/// Crash recovery of a killed old primary in single-user mode, as pg_rewind
/// would do it: no socket, so no client writes to it meanwhile, and it ends
/// cleanly shut down on its own timeline, ready for `node rejoin --force-rewind`.
/// Its fencing `standby.signal` is lifted only while it runs (single-user mode
/// refuses standby mode) and put back at once.
async fn recover_fenced(node: &NodeLayout, deadline: &Deadline) -> Result<(), Failure> {
    let data = node.data();
    let signal = data.join("standby.signal");
    log::info!("crash recovery of {} (an old primary) in single-user mode", node.name());
    let _ = std::fs::remove_file(&signal);
    let recovered = run(
        &pg("postgres"),
        &[os("--single"), os("-D"), data.as_os_str(), os("-c"), os("archive_mode=off"), os("template1")],
        &[],
        deadline.command(),
    )
    .await;
    write_file(&signal, "", 0o600)?;
    recovered.map_err(step(&format!("recover {} in single-user mode", node.name())))?;
    Ok(())
}

/// What a standby's WAL receiver is doing, seen against the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replication {
    /// Streaming, from the primary's port.
    streaming_from_primary: bool,
    /// Whether the WAL it last received is on the primary's current timeline.
    on_primary_timeline: bool,
}

impl Replication {
    fn follows(&self) -> bool {
        self.streaming_from_primary && self.on_primary_timeline
    }
}

/// `None` while the node has no WAL receiver (or either node does not answer).
async fn replication_state(layout: &Layout, slot: usize, primary: usize) -> Option<Replication> {
    let wanted = layout.node(primary).port;
    let (standby, source) = (connect_node(&layout.node(slot)).await?, connect_node(&layout.node(primary)).await?);
    let rows = observe::simple_rows(
        &standby,
        "SELECT status, sender_port::text AS p, received_tli::text AS tli FROM pg_catalog.pg_stat_wal_receiver",
    )
    .await
    .ok()?;
    let timeline = observe::simple_rows(&source, observe::CURRENT_TIMELINE_QUERY).await.ok()?;
    let row = rows.first()?;
    let get = |r: &std::collections::BTreeMap<String, Option<String>>, k: &str| r.get(k).cloned().flatten();
    let primary_timeline = timeline.first().and_then(|t| get(t, "timeline"));
    Some(Replication {
        streaming_from_primary: get(row, "status").as_deref() == Some("streaming")
            && get(row, "p").and_then(|p| p.parse::<u16>().ok()) == Some(wanted),
        on_primary_timeline: get(row, "tli").is_some() && get(row, "tli") == primary_timeline,
    })
}

/// Waits until the node streams from the primary, on the primary's timeline
/// (true), or `within` passes (false). The timeline matters: a node with WAL
/// past the promotion restarted as a standby streams the old timeline up to
/// the fork again and again, and never follows.
pub(super) async fn streams_from(
    ctx: &Context,
    layout: &Layout,
    slot: usize,
    primary: usize,
    within: Duration,
) -> bool {
    poll_until(&ctx.stop, within, Duration::from_millis(300), "replication", || async move {
        Ok::<_, String>(replication_state(layout, slot, primary).await.is_some_and(|r| r.follows()).then_some(()))
    })
    .await
    .is_ok()
}

/// After a rejoin: true once the node follows the primary; false when its WAL
/// receiver stays on an old timeline for `DIVERGED_AFTER` (the node has WAL
/// past the promotion: it streams the old timeline to the fork, again and
/// again, and never follows), or nothing happens within `within`.
async fn follows_after_rejoin(ctx: &Context, layout: &Layout, slot: usize, primary: usize, within: Duration) -> bool {
    const DIVERGED_AFTER: Duration = Duration::from_secs(15);
    let started = Instant::now();
    let mut old_timeline_since: Option<Instant> = None;
    while started.elapsed() < within && !ctx.stop.is_stopped() {
        match replication_state(layout, slot, primary).await {
            Some(r) if r.follows() => return true,
            Some(r) if !r.on_primary_timeline => {
                if old_timeline_since.get_or_insert_with(Instant::now).elapsed() >= DIVERGED_AFTER {
                    return false;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

async fn start_repmgrd(node: &NodeLayout) -> Result<(), Failure> {
    if live_pid(&node.repmgrd_pid(), "repmgrd").is_some() {
        return Ok(());
    }
    log::info!("starting repmgrd for {}", node.name());
    let conf = node.repmgr_conf();
    spawn_detached(
        &pg("repmgrd"),
        &[os("-f"), conf.as_os_str(), os("--daemonize=false")],
        &node.repmgrd_log(),
    )
    .await
    .map_err(step(&format!("start repmgrd for {}", node.name())))
}

pub(super) async fn pgpool_cmd(
    layout: &Layout,
    extra: &[&OsStr],
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let p = layout.pgpool();
    let (conf, pcp, hba) = (p.conf(), p.pcp_conf(), p.hba());
    let mut args: Vec<&OsStr> = vec![
        os("-f"),
        conf.as_os_str(),
        os("-F"),
        pcp.as_os_str(),
        os("-a"),
        hba.as_os_str(),
    ];
    args.extend_from_slice(extra);
    run(Path::new(PGPOOL_BIN), &args, &[], deadline.command()).await
}

async fn stop_pgpool(layout: &Layout, deadline: &Deadline) -> Result<(), Failure> {
    let p = layout.pgpool();
    let Some(pid) = live_pid(&p.pid(), "pgpool") else {
        return Ok(());
    };
    log::info!("stopping pgpool");
    if pgpool_cmd(layout, &[os("-m"), os("fast"), os("stop")], deadline)
        .await
        .is_err()
    {
        local::terminate(pid, "pgpool", Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Starts pgpool without `-D`: pgpool_status is kept across restarts, so a
/// node pgpool detached (an old primary) stays detached until the provider
/// has made it a healthy standby and attaches it.
async fn start_pgpool(layout: &Layout) -> Result<(), Failure> {
    let p = layout.pgpool();
    if live_pid(&p.pid(), "pgpool").is_some() {
        return Ok(());
    }
    log::info!("starting pgpool on port {}", p.port);
    let (conf, pcp, hba) = (p.conf(), p.pcp_conf(), p.hba());
    spawn_detached(
        Path::new(PGPOOL_BIN),
        &[
            os("-n"),
            os("-f"),
            conf.as_os_str(),
            os("-F"),
            pcp.as_os_str(),
            os("-a"),
            hba.as_os_str(),
        ],
        &p.log(),
    )
    .await
    .map_err(step("start pgpool"))
}

async fn pcp(
    layout: &Layout,
    tool: &str,
    slot: usize,
    deadline: &Deadline,
) -> Result<String, LocalError> {
    let p = layout.pgpool();
    let (sock, port, id) = (p.socket_dir(), p.pcp_port.to_string(), slot.to_string());
    let pass = p.pcppass();
    // pgpool opens its PCP socket only once it has found the primary, a
    // moment after it answers SQL.
    let socket = sock.join(format!(".s.PGSQL.{port}"));
    let until = std::time::Instant::now() + deadline.command().min(Duration::from_secs(30));
    while !socket.exists() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run(
        &Path::new(PCP_BINDIR).join(tool),
        &[
            os("-h"),
            sock.as_os_str(),
            os("-p"),
            os(&port),
            os("-U"),
            os(render::PCP_USER),
            os("-w"),
            os("-n"),
            os(&id),
        ],
        &[("PCPPASSFILE", pass.as_os_str())],
        deadline.command(),
    )
    .await
}

/// Makes pgpool agree with repmgr: the primary promoted in pgpool, every
/// healthy node attached. Waits until SHOW POOL_NODES shows it.
async fn reconcile_pgpool(
    ctx: &Context,
    spec: &GroupSpec,
    layout: &Layout,
    primary: usize,
    deadline: &Deadline,
) -> Result<GroupLive, Failure> {
    let slots: Vec<usize> = spec.slots().collect();
    let pgpool = layout.pgpool();
    let pgpool = &pgpool;
    poll_until(
        &ctx.stop,
        deadline.left().min(Duration::from_secs(60)),
        Duration::from_millis(300),
        "pgpool to answer",
        || async move { Ok::<_, String>(observe::pool_nodes(pgpool).await) },
    )
    .await
    .map_err(|e| wait_failure("pgpool to answer on its port", e))?;

    // Each PCP action once per apply; then pgpool gets time to act on it.
    let acted = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let what = "pgpool to agree with repmgr (every node attached, the same primary)";
    let live = poll_until(
        &ctx.stop,
        deadline.left().min(Duration::from_secs(120)),
        Duration::from_millis(500),
        what,
        || {
            let slots = slots.clone();
            let acted = &acted;
            let first =
                |what: &'static str, slot: usize| acted.lock().expect("lock").insert((what, slot));
            async move {
                let live = observe::observe(layout, &slots).await;
                if live.primary != Some(primary) {
                    return Err(format!(
                        "repmgr's primary changed to {:?} while converging",
                        live.primary.map(node_name)
                    ));
                }
                let Some(pool) = &live.pool_nodes else {
                    return Ok(None);
                };
                let mut done = true;
                if live.pgpool_primary() != Some(primary) {
                    done = false;
                    let attached = pool.iter().any(|p| p.id == primary && p.attached());
                    if !attached && first("attach", primary) {
                        log::info!("attaching {} in pgpool", node_name(primary));
                        pcp(layout, "pcp_attach_node", primary, deadline)
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if attached && first("promote", primary) {
                        log::info!("promoting {} in pgpool", node_name(primary));
                        pcp(layout, "pcp_promote_node", primary, deadline)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                for &slot in &slots {
                    let healthy_standby =
                        slot != primary && live.status(slot) == observe::STATUS_DETACHED;
                    if healthy_standby {
                        done = false;
                        if first("attach", slot) {
                            log::info!("attaching {} in pgpool", node_name(slot));
                            pcp(layout, "pcp_attach_node", slot, deadline)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    } else if live.status(slot) != STATUS_UP && slot != primary {
                        done = false;
                    }
                }
                Ok(done.then_some(live))
            }
        },
    )
    .await
    .map_err(|e| wait_failure(what, e))?;
    Ok(live)
}

/// Brings the live group to `spec`. `spec.port_base` must be known.
pub async fn converge(
    ctx: &Context,
    spec: &GroupSpec,
    deadline: &Deadline,
) -> Result<GroupLive, Failure> {
    let layout = spec.layout();
    prepare_base(spec)?;
    prepare_tls(spec, &layout)?;
    let files = prepare_pgpool_files(spec, &layout).await?;
    let mut pgpool_conf_changed = files.conf_changed;
    let mut slots: Vec<usize> = spec.slots().collect();
    for s in observe::slots_on_disk(&layout) {
        if !slots.contains(&s) {
            slots.push(s);
        }
    }
    let mut live = observe::observe(&layout, &slots).await;
    refence(&layout, &slots, &live)?;
    // With synchronous replication, a commit waits for a standby: while none
    // streams (bootstrap, or every standby lost) the nodes are written without
    // it, or `primary register` and the clones would wait for ever.
    let any_standby_streams = slots
        .iter()
        .any(|s| live.status(*s) == STATUS_UP && live.primary != Some(*s));
    let interim = GroupSpec {
        synchronous_replication: spec.synchronous_replication && any_standby_streams,
        ..spec.clone()
    };
    let mut conf_changed = Vec::new();
    for slot in spec.slots() {
        if write_node_files(&interim, &layout, slot)? {
            conf_changed.push(slot);
        }
    }

    // The primary: the live one, else a stopped one started, else a new one.
    let primary = match live.primary {
        Some(p) => p,
        None => {
            let stopped_primary = slots.iter().copied().find(|s| {
                let n = layout.node(*s);
                n.has_data() && !n.data().join("standby.signal").exists() && !n.fenced_marker().exists()
            });
            match stopped_primary {
                Some(p) => start_node(&layout.node(p), deadline).await.map(|_| p)?,
                None if !slots.iter().any(|s| layout.node(*s).has_data()) => {
                    bootstrap_primary(spec, &layout, deadline).await?;
                    0
                }
                None => {
                    return Err(Failure::general(
                        "No primary",
                        "Every node of the group is a standby and none is running as primary; repmgr could not promote one. \
                         Start the node with the most recent data by hand (`repmgr standby promote`), then apply again.",
                    ))
                }
            }
        }
    };
    if !spec.slots().any(|s| s == primary) {
        return Err(Failure::at(
            AttrPath::root("standbys"),
            "The primary would be removed",
            format!("{} is the primary now and lies beyond the {} standbys asked for. Keep `standbys` at least {} until it is no longer primary.", node_name(primary), spec.standbys, primary),
        ));
    }
    check_stop(ctx)?;
    // Before pg_hba.conf asks TCP clients for it.
    let primary_node = layout.node(primary);
    if primary_node.fenced_marker().exists() {
        // Promoted after it had been fenced and rejoined: a primary now.
        std::fs::remove_file(primary_node.fenced_marker())
            .map_err(io_error(&primary_node.fenced_marker(), "remove"))
            .map_err(Failure::from)?;
    }
    // A new (or no more) password: pgpool stops while every node switches,
    // so that its checks never meet a node that wants the other one and
    // detach it. The role's password is set before pg_hba.conf asks for it,
    // and removed only after pg_hba.conf stopped asking.
    let mut reloaded = Vec::new();
    let pgpool_stopped_for_password =
        files.password_changed && live_pid(&layout.pgpool().pid(), "pgpool").is_some();
    if pgpool_stopped_for_password {
        stop_pgpool(&layout, deadline).await?;
    }
    let reload_running = |reloaded: &mut Vec<usize>| {
        let to_reload: Vec<usize> = conf_changed
            .iter()
            .copied()
            .filter(|s| !reloaded.contains(s) && live.nodes.get(s).is_some_and(|n| n.running))
            .collect();
        reloaded.extend(&to_reload);
        to_reload
    };
    let removing = spec.superuser_password.is_none();
    if files.password_changed && removing {
        for slot in reload_running(&mut reloaded) {
            pg_ctl(&layout.node(slot), "reload", deadline).await.map_err(step(&format!("reload {}", node_name(slot))))?;
        }
    }
    ensure_superuser_password(spec, &primary_node).await?;
    if files.password_changed && !removing {
        for slot in reload_running(&mut reloaded) {
            pg_ctl(&layout.node(slot), "reload", deadline).await.map_err(step(&format!("reload {}", node_name(slot))))?;
        }
    }
    if pgpool_stopped_for_password {
        start_pgpool(&layout).await?;
        pgpool_conf_changed = false;
    }
    if conf_changed.contains(&primary) && !reloaded.contains(&primary) {
        pg_ctl(&layout.node(primary), "reload", deadline)
            .await
            .map_err(step("reload the primary"))?;
    }

    // Standbys, one at a time: clones are heavy and share the machine.
    for slot in spec.slots().filter(|s| *s != primary) {
        check_stop(ctx)?;
        let node = layout.node(slot);
        // The event hook may be rejoining this node (an old primary) right
        // now: wait for it, then look again, and keep it out while repairing.
        let _lock = match local::lock_exclusive(&node.rejoin_lock(), Duration::ZERO).await? {
            Some(lock) => lock,
            None => {
                log::info!("{} is being rejoined by the failover hook: waiting", node.name());
                let within = deadline.left().min(Duration::from_secs(600));
                let lock = local::lock_exclusive(&node.rejoin_lock(), within).await?.ok_or_else(|| {
                    Failure::general(
                        "Node busy",
                        format!(
                            "The failover hook has been rejoining {} for {} s ({} is held); see {}. Apply again later.",
                            node.name(),
                            within.as_secs(),
                            node.rejoin_lock().display(),
                            node.dir.join("rejoin.log").display()
                        ),
                    )
                })?;
                live = observe::observe(&layout, &slots).await;
                lock
            }
        };
        let status = live.status(slot);
        if !node.has_data() {
            clone_standby(&layout, slot, primary, deadline).await?;
        } else if status == STATUS_FENCED {
            log::warn!(
                "{} is a second primary (an old primary that came back): fencing and rejoining it",
                node.name()
            );
            // Fenced on disk first: if apply stops here, it comes back read-only.
            write_file(&node.fenced_marker(), "", 0o600)?;
            write_file(&node.data().join("standby.signal"), "", 0o600)?;
            rejoin(ctx, &layout, slot, primary, deadline).await?;
        } else if !live.nodes.get(&slot).is_some_and(|n| n.running) {
            if crashed_as_primary(&node, deadline).await {
                recover_fenced(&node, deadline).await?;
                rejoin(ctx, &layout, slot, primary, deadline).await?;
            } else if node.data().join("standby.signal").exists() {
                start_node(&node, deadline).await?;
                if !streams_from(ctx, &layout, slot, primary, Duration::from_secs(15)).await {
                    rejoin(ctx, &layout, slot, primary, deadline).await?;
                }
            } else {
                rejoin(ctx, &layout, slot, primary, deadline).await?;
            }
        } else if status == STATUS_NOT_REPLICATING
            && !streams_from(ctx, &layout, slot, primary, Duration::from_secs(15)).await
        {
            rejoin(ctx, &layout, slot, primary, deadline).await?;
        } else if conf_changed.contains(&slot) && !reloaded.contains(&slot) {
            pg_ctl(&node, "reload", deadline)
                .await
                .map_err(step(&format!("reload {}", node.name())))?;
        }
        let streams = streams_from(
            ctx,
            &layout,
            slot,
            primary,
            deadline.left().min(Duration::from_secs(120)),
        )
        .await;
        if streams && node.fenced_marker().exists() {
            std::fs::remove_file(node.fenced_marker())
                .map_err(io_error(&node.fenced_marker(), "remove"))
                .map_err(Failure::from)?;
        }
        if !streams {
            return Err(Failure::general(
                "Standby not replicating",
                format!(
                    "{} does not stream from {} after repair; see {}.",
                    node.name(),
                    node_name(primary),
                    node.postgres_log().display()
                ),
            ));
        }
    }

    if interim.synchronous_replication != spec.synchronous_replication {
        log::info!("standbys stream: switching synchronous replication on");
        for slot in spec.slots() {
            if write_node_files(spec, &layout, slot)? {
                pg_ctl(&layout.node(slot), "reload", deadline)
                    .await
                    .map_err(step(&format!("reload {}", node_name(slot))))?;
            }
        }
    }

    // Surplus nodes (standbys lowered): stop, unregister, delete.
    for slot in slots.iter().copied().filter(|s| *s > spec.standbys) {
        check_stop(ctx)?;
        remove_node(&layout, slot, primary, deadline).await?;
    }

    for slot in spec.slots() {
        start_repmgrd(&layout.node(slot)).await?;
    }

    if pgpool_conf_changed {
        stop_pgpool(&layout, deadline).await?;
    }
    start_pgpool(&layout).await?;
    check_stop(ctx)?;
    super::restart::restart_pending(ctx, spec, &layout, primary, deadline).await?;
    let live = reconcile_pgpool(ctx, spec, &layout, primary, deadline).await?;
    // Only a configuration the group converged to is what import reads back.
    super::import::save(spec).map_err(step("save the configuration for import"))?;
    Ok(live)
}

async fn remove_node(
    layout: &Layout,
    slot: usize,
    primary: usize,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let node = layout.node(slot);
    log::info!("removing {}", node.name());
    stop_repmgrd(&node).await;
    stop_node(&node, deadline).await?;
    let id = repmgr_node_id(slot).to_string();
    // From the primary's configuration: it is the one that can write the metadata.
    if let Err(e) = repmgr(
        &layout.node(primary),
        &["standby", "unregister", &format!("--node-id={id}")],
        deadline,
    )
    .await
    {
        log::warn!("repmgr could not unregister {}: {e}", node.name());
    }
    if let Some(client) = connect_node(&layout.node(primary)).await {
        let slot_name = format!("repmgr_slot_{id}");
        let _ = client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND NOT active",
                &[&slot_name],
            )
            .await;
    }
    std::fs::remove_dir_all(&node.dir)
        .map_err(io_error(&node.dir, "remove"))
        .map_err(Failure::from)?;
    Ok(())
}

/// Stops every process of the group: pgpool, then every repmgrd (so none
/// promotes a standby while the primary stops), then standbys, then the rest.
pub async fn stop_all(layout: &Layout, deadline: &Deadline) -> Result<(), Failure> {
    stop_pgpool(layout, deadline).await?;
    let slots = observe::slots_on_disk(layout);
    for s in &slots {
        stop_repmgrd(&layout.node(*s)).await;
    }
    let mut ordered: Vec<usize> = slots.clone();
    ordered.sort_by_key(|s| !layout.node(*s).data().join("standby.signal").exists());
    for s in ordered {
        let node = layout.node(s);
        if let Err(e) = stop_node(&node, deadline).await {
            log::warn!("{}: {}", e.summary, e.detail);
            if let Some(pid) = live_pid(&node.postmaster_pid(), "postgres") {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
        }
    }
    kill_strays(&layout.base);
    Ok(())
}

/// The group's own leftovers (a repmgrd or pg_ctl whose pid file is gone) are
/// killed: processes of the group's programs, run by the group's account
/// (the owner of its node directories) or by the provider's, whose command
/// line names the base directory. Nothing else is touched, whatever its
/// command line says: a `tail -f` of a log, an editor, another user's shell.
fn kill_strays(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    const GROUP_PROGRAMS: &[&str] = &["postgres", "repmgrd", "repmgr", "pgpool", "pg_ctl"];
    let needle = format!("{}/", base.display());
    // SAFETY: geteuid has no preconditions.
    let mut owners = vec![unsafe { libc::geteuid() }];
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                owners.push(meta.uid());
            }
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !GROUP_PROGRAMS.contains(&comm.trim()) {
            continue;
        }
        if !entry.metadata().is_ok_and(|m| owners.contains(&m.uid())) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            log::warn!("killing leftover {} process {pid} of the group", comm.trim());
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// After a failed create of a new group: stops what it started and removes
/// what it wrote. The base directory itself goes only when the create made
/// it (`keep_base_dir` false); it was empty before, so all inside is the
/// create's own.
pub async fn discard_created(spec: &GroupSpec, keep_base_dir: bool, deadline: &Deadline) -> Result<(), Failure> {
    let layout = spec.layout();
    if !layout.marker().exists() {
        return Ok(());
    }
    stop_all(&layout, deadline).await?;
    if !keep_base_dir {
        return std::fs::remove_dir_all(&spec.base_dir)
            .map_err(io_error(&spec.base_dir, "remove"))
            .map_err(Failure::from);
    }
    let entries = std::fs::read_dir(&spec.base_dir)
        .map_err(io_error(&spec.base_dir, "read"))
        .map_err(Failure::from)?;
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io_error(&path, "remove")).map_err(Failure::from)?;
    }
    Ok(())
}

pub async fn destroy(spec: &GroupSpec, deadline: &Deadline) -> Result<(), Failure> {
    let layout = spec.layout();
    if !layout.marker().exists() {
        log::info!(
            "{} holds no group any more; nothing to delete",
            spec.base_dir.display()
        );
        return Ok(());
    }
    stop_all(&layout, deadline).await?;
    std::fs::remove_dir_all(&spec.base_dir)
        .map_err(io_error(&spec.base_dir, "remove"))
        .map_err(Failure::from)?;
    Ok(())
}
