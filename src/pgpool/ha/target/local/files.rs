//! The group's files on this machine: the base directory and its marker,
//! the TLS certificate, pgpool's files and each node's, as `render` makes them.

use crate::framework::AttrPath;
use crate::pgpool::ha::layout::{Layout, HOST, MARKER};
use crate::pgpool::ha::live::GroupLive;
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::render;
use crate::pgpool::ha::target::Failure;

use super::host::{self, io_error, make_dir, write_file};

/// The base directory: created when missing; refused when it holds anything
/// but this group, so an apply never writes into someone else's files.
pub fn prepare_base(spec: &GroupSpec) -> Result<(), Failure> {
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
pub struct PgpoolFiles {
    /// pgpool.conf: pgpool must restart.
    pub conf_changed: bool,
    /// The superuser's password (pool_passwd written or removed).
    pub password_changed: bool,
}

/// The PCP password: made once, kept in files only the service user reads.
pub async fn prepare_pgpool_files(spec: &GroupSpec, layout: &Layout) -> Result<PgpoolFiles, Failure> {
    let p = layout.pgpool();
    make_dir(&p.dir)?;
    make_dir(&p.socket_dir())?;
    make_dir(&p.logdir())?;
    if !p.pcppass().exists() || !p.pcp_conf().exists() {
        let password = host::random_hex(16)?;
        write_file(
            &p.pcp_conf(),
            &render::pcp_conf(&host::md5_hex(&password).await?),
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
pub fn refence(layout: &Layout, slots: &[usize], live: &GroupLive) -> Result<(), Failure> {
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

/// With Citus, every node serves TLS (see `render::node_conf`): one
/// self-signed certificate for the group, made once. Nobody verifies it
/// (`sslmode=require` only encrypts); a user who wants a real one sets
/// `ssl_cert_file` and `ssl_key_file` in `postgresql_settings`.
pub fn prepare_tls(spec: &GroupSpec, layout: &Layout) -> Result<(), Failure> {
    if !spec.uses_citus() || (layout.tls_cert().exists() && layout.tls_key().exists()) {
        return Ok(());
    }
    make_dir(&layout.tls_dir())?;
    let made = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        HOST.to_string(),
    ])
    .map_err(|e| Failure::general("Cannot create the group's TLS certificate", e.to_string()))?;
    write_file(&layout.tls_key(), &made.signing_key.serialize_pem(), 0o600)?;
    write_file(&layout.tls_cert(), &made.cert.pem(), 0o644)?;
    Ok(())
}

/// Writes a node's files; true when its PostgreSQL settings changed.
pub fn write_node_files(spec: &GroupSpec, layout: &Layout, slot: usize) -> Result<bool, Failure> {
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
