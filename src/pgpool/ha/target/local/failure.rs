//! The local machine's errors as a target's failures.

use crate::pgpool::ha::target::Failure;

use super::host::LocalError;

impl From<LocalError> for Failure {
    fn from(e: LocalError) -> Self {
        Failure::general("Local command failed", e.to_string())
    }
}

pub fn step(what: &str) -> impl FnOnce(LocalError) -> Failure + '_ {
    move |e| Failure::general(format!("Cannot {what}"), e.to_string())
}
