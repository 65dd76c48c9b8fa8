//! A new group's first primary (initdb, repmgr's database, `primary
//! register`) and the superuser's password set on the primary.

use crate::pgpool::ha::layout::{Layout, NodeLayout};
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::render::{self, REPMGR_DB, SUPERUSER};
use crate::pgpool::ha::target::{Deadline, Failure};
use crate::sql::{quote_ident, quote_literal};

use super::failure::step;
use super::host::{io_error, run, write_file};
use super::observe::{self, connect_node};
use super::tools::{os, pg, repmgr, start_node};

/// initdb, the include line, start, repmgr's database, `primary register`.
pub async fn bootstrap_primary(
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

/// The `postgres` role's password, set on the primary (standbys replicate
/// it) as a SCRAM verifier computed here, so the clear password never
/// reaches the server, its logs or `pg_stat_activity`. Set on every converge
/// (cheap, and an apply interrupted between writing pool_passwd and this
/// still ends with both agreeing); removed when no longer configured.
pub async fn ensure_superuser_password(spec: &GroupSpec, node: &NodeLayout) -> Result<(), Failure> {
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
