//! How a target's work fails and how long it may take: one `Failure` per
//! stopped apply (a diagnostic, with a path when one attribute explains it),
//! and the `Deadline` every wait of one apply shares.

use std::time::{Duration, Instant};

use crate::framework::{AttrPath, Context, Diagnostics, WaitError};

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

pub fn wait_failure<E: std::fmt::Display>(what: &str, e: WaitError<E>) -> Failure {
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
    pub fn left(&self) -> Duration {
        self.until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    }
    /// A single command's time: what is left, capped so one hung tool cannot eat it all silently.
    pub fn command(&self) -> Duration {
        self.left().min(Duration::from_secs(600))
    }
}

pub fn check_stop(ctx: &Context) -> Result<(), Failure> {
    if ctx.stop.is_stopped() {
        return Err(wait_failure::<String>("the next step", WaitError::Stopped));
    }
    Ok(())
}
