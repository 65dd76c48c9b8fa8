//! Waiting for a server-side condition, written once: bounded by a timeout,
//! ended promptly by Stop, with progress logged.

use std::future::Future;
use std::time::{Duration, Instant};

use super::StopSignal;

#[derive(Debug)]
pub enum WaitError<E> {
    /// Terraform asked the provider to stop; server-side work goes on.
    Stopped,
    TimedOut(Duration),
    Failed(E),
}

/// Calls `poll` every `interval` until it yields `Some`, fails, the timeout
/// passes, or Stop is raised.
pub async fn poll_until<T, E, F, Fut>(
    stop: &StopSignal,
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut poll: F,
) -> Result<T, WaitError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let started = Instant::now();
    let mut last_log = started;
    loop {
        if stop.is_stopped() {
            return Err(WaitError::Stopped);
        }
        if let Some(done) = poll().await.map_err(WaitError::Failed)? {
            return Ok(done);
        }
        if started.elapsed() >= timeout {
            return Err(WaitError::TimedOut(timeout));
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            log::info!(
                "still waiting for {what} ({}s)",
                started.elapsed().as_secs()
            );
            last_log = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.stopped() => return Err(WaitError::Stopped),
        }
    }
}
