//! Citus' background rebalancer, driven to `finished`.
//!
//! `citus_rebalance_wait()` returns even when a job failed, and one long wait
//! under a statement timeout has left replication slots behind, so jobs are
//! polled instead. A job already running (say, from an interrupted apply) is
//! adopted rather than started twice.

use std::time::Duration;

use tokio_postgres::Client;

use crate::framework::{poll_until, StopSignal, WaitError};
use crate::sql::SqlError;

/// How a rebalance moves shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalanceOptions {
    /// A `pg_dist_rebalance_strategy` name; `None` uses the cluster's default.
    pub strategy: Option<String>,
    /// `auto`, `force_logical` or `block_writes`.
    pub shard_transfer_mode: String,
}

/// What the rebalancer would do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingMoves {
    pub moves: i64,
    pub bytes: i64,
}

#[derive(Debug)]
pub enum RebalanceError {
    Sql(SqlError),
    /// The job ended in `failed` or `cancelled`.
    JobFailed {
        job_id: i64,
        state: String,
        message: String,
    },
    /// Still running when the timeout passed or Stop came; the job is left running.
    StillRunning {
        job_id: i64,
        reason: String,
        message: String,
    },
}

impl std::fmt::Display for RebalanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebalanceError::Sql(e) => write!(f, "{e}"),
            RebalanceError::JobFailed { job_id, state, message } => {
                write!(f, "Citus rebalance job {job_id} ended as {state}: {message}")
            }
            RebalanceError::StillRunning { job_id, reason, message } => write!(
                f,
                "Citus rebalance job {job_id} is still running ({reason}); it was left running and the next apply \
                 adopts it. Watch it with `SELECT * FROM citus_rebalance_status();`.{}",
                if message.is_empty() { String::new() } else { format!(" Last task message: {message}") }
            ),
        }
    }
}

impl From<SqlError> for RebalanceError {
    fn from(e: SqlError) -> Self {
        RebalanceError::Sql(e)
    }
}

/// Jobs that have not reached a final state.
const ACTIVE_STATES: &str = "('scheduled', 'running', 'cancelling', 'failing')";

/// The id of a rebalance job that is still in progress, if any.
pub async fn active_job(client: &Client) -> Result<Option<i64>, SqlError> {
    let query = format!(
        "SELECT job_id FROM pg_catalog.pg_dist_background_job WHERE state::text IN {ACTIVE_STATES} ORDER BY job_id LIMIT 1"
    );
    let row = client.query_opt(&query, &[]).await?;
    Ok(row.map(|r| r.get::<_, i64>(0)))
}

/// Moves the rebalancer would make with `strategy` (one query; Citus asks each
/// node for sizes once, not per shard).
pub async fn pending_moves(
    client: &Client,
    strategy: Option<&str>,
) -> Result<PendingMoves, SqlError> {
    let row = client
        .query_one(
            "SELECT count(*)::bigint, coalesce(sum(shard_size), 0)::bigint \
             FROM pg_catalog.get_rebalance_table_shards_plan(rebalance_strategy := $1::text::name)",
            &[&strategy],
        )
        .await?;
    Ok(PendingMoves {
        moves: row.get(0),
        bytes: row.get(1),
    })
}

/// Starts a background rebalance; `None` when there is nothing to move.
pub async fn start(
    client: &Client,
    options: &RebalanceOptions,
    drain_only: bool,
) -> Result<Option<i64>, SqlError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.citus_rebalance_start(rebalance_strategy := $1::text::name, drain_only := $2, \
             shard_transfer_mode := $3::text::citus.shard_transfer_mode)",
            &[&options.strategy, &drain_only, &options.shard_transfer_mode],
        )
        .await?;
    Ok(row.get::<_, Option<i64>>(0))
}

/// Waits until `job_id` is `finished`, surfacing the failing task's message.
pub async fn wait(
    client: &Client,
    job_id: i64,
    stop: &StopSignal,
    timeout: Duration,
) -> Result<(), RebalanceError> {
    log::info!("waiting for Citus rebalance job {job_id}");
    let result = poll_until(
        stop,
        timeout,
        Duration::from_millis(500),
        "the Citus rebalance job",
        || async {
            let state: String = client
                .query_one(
                    "SELECT state::text FROM pg_catalog.pg_dist_background_job WHERE job_id = $1",
                    &[&job_id],
                )
                .await?
                .get(0);
            Ok::<_, SqlError>(match state.as_str() {
                "finished" => Some(Ok(())),
                "failed" | "cancelled" => Some(Err(state)),
                _ => None,
            })
        },
    )
    .await;
    match result {
        Ok(Ok(())) => {
            log::info!("Citus rebalance job {job_id} finished");
            Ok(())
        }
        Ok(Err(state)) => {
            let message = last_task_message(client, job_id).await.unwrap_or_default();
            Err(RebalanceError::JobFailed {
                job_id,
                state,
                message,
            })
        }
        Err(WaitError::Failed(e)) => Err(e.into()),
        Err(WaitError::Stopped) => {
            Err(still_running(client, job_id, "the provider was asked to stop".into()).await)
        }
        Err(WaitError::TimedOut(t)) => Err(still_running(
            client,
            job_id,
            format!("not finished after {}s", t.as_secs()),
        )
        .await),
    }
}

async fn still_running(client: &Client, job_id: i64, reason: String) -> RebalanceError {
    let message = last_task_message(client, job_id).await.unwrap_or_default();
    RebalanceError::StillRunning {
        job_id,
        reason,
        message,
    }
}

/// The newest non-empty task message of a job: the error of a failed or retrying move.
async fn last_task_message(client: &Client, job_id: i64) -> Result<String, SqlError> {
    let row = client
        .query_opt(
            "SELECT message FROM pg_catalog.pg_dist_background_task \
             WHERE job_id = $1 AND coalesce(message, '') <> '' ORDER BY task_id DESC LIMIT 1",
            &[&job_id],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, String>(0)).unwrap_or_default())
}
