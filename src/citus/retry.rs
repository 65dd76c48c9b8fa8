//! Retrying statements Citus reports as transient.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::framework::Context;
use crate::sql::SqlError;

/// Metadata resync in progress, serialization failures, deadlocks and lock
/// timeouts clear up by themselves; anything else is reported at once.
pub fn is_retryable(e: &SqlError) -> bool {
    e.message.contains("is out of sync")
        || matches!(
            e.code.as_deref(),
            Some("40001") | Some("40P01") | Some("55P03")
        )
}

/// Runs `attempt` up to seven times with a doubling delay from half a second.
pub async fn with_retries<T, F, Fut>(ctx: &Context, mut attempt: F) -> Result<T, SqlError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SqlError>>,
{
    let mut delay = Duration::from_millis(500);
    for _ in 0..6 {
        match attempt().await {
            Err(e) if is_retryable(&e) && !ctx.stop.is_stopped() => {
                log::warn!("retrying after a transient Citus error: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    attempt().await
}

/// One statement (a node-management or layout function call) with retries.
pub async fn execute_with_retries(
    ctx: &Context,
    client: &Client,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), SqlError> {
    with_retries(ctx, || async {
        client.execute(statement, params).await?;
        Ok(())
    })
    .await
}
