//! Commands run inside a pod through the API server (`pods/exec` over
//! WebSocket): how the provider reads and acts on a group's processes on
//! Kubernetes. A Terraform Cloud runner reaches the API server and nothing
//! else, so nothing here opens a connection to a pod's address.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::api::explain;

/// One command to run: `argv` is executed directly (no shell), in
/// `container` (which a pod of several containers requires), with `stdin`
/// fed and closed. A command cut off by `timeout` may go on running in the
/// pod: what callers run must be safe to run again.
#[derive(Debug, Clone)]
pub struct PodCommand<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: Option<&'a str>,
    pub argv: &'a [&'a str],
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

#[derive(Debug)]
pub enum ExecError {
    /// The API server refused the request (no such pod, forbidden, the
    /// container not running, ...).
    Api(kube::Error),
    /// The command could not be run or its result not read (the stream
    /// ended without the final status, the status was not an exit).
    Stream(String),
    TimedOut(Duration),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Api(e) => f.write_str(&explain(e)),
            ExecError::Stream(message) => f.write_str(message),
            ExecError::TimedOut(after) => write!(f, "the command did not finish within {after:?}"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Runs `command` and waits for it to end; a non-zero exit is an
/// `ExecOutput`, not an error: callers decide what an exit code means.
pub async fn exec(client: &Client, command: &PodCommand<'_>) -> Result<ExecOutput, ExecError> {
    tokio::time::timeout(command.timeout, run(client, command))
        .await
        .map_err(|_| ExecError::TimedOut(command.timeout))?
}

async fn run(client: &Client, command: &PodCommand<'_>) -> Result<ExecOutput, ExecError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), command.namespace);
    let mut params = AttachParams::default()
        .stdin(command.stdin.is_some())
        .stdout(true)
        .stderr(true);
    if let Some(container) = command.container {
        params = params.container(container);
    }
    let mut attached = pods
        .exec(command.pod, command.argv.iter().copied(), &params)
        .await
        .map_err(ExecError::Api)?;
    let status = attached
        .take_status()
        .ok_or_else(|| ExecError::Stream("the exec stream has no status channel".into()))?;
    // Input is written while the output is read: kube's channels are small, so a
    // command that prints before it has read all its input would otherwise stall.
    let mut writer = attached.stdin();
    let write_in = async {
        if let (Some(input), Some(writer)) = (command.stdin, writer.as_mut()) {
            writer.write_all(input).await?;
            // v5.channel.k8s.io closes the command's stdin on shutdown.
            writer.shutdown().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdout = attached.stdout();
    let mut stderr = attached.stderr();
    let read_out = async {
        match stdout.as_mut() {
            Some(s) => s.read_to_end(&mut out).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let read_err = async {
        match stderr.as_mut() {
            Some(s) => s.read_to_end(&mut err).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let (written, a, b) = tokio::join!(write_in, read_out, read_err);
    written.map_err(|e| ExecError::Stream(format!("writing the command's input: {e}")))?;
    a.and(b)
        .map_err(|e| ExecError::Stream(format!("reading the command's output: {e}")))?;
    drop(writer);
    let status = status.await;
    let joined = attached.join().await;
    let exit_code = match status.as_ref() {
        Some(status) => exit_code(status)?,
        None => {
            let cause = joined.err().map(|e| format!(": {e}")).unwrap_or_default();
            return Err(ExecError::Stream(format!(
                "the exec stream ended without the command's exit status{cause}"
            )));
        }
    };
    Ok(ExecOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// The exit code in the API server's final Status: `Success`, or
/// `NonZeroExitCode` with the code as its `ExitCode` cause.
fn exit_code(status: &Status) -> Result<i32, ExecError> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(ExecError::Stream(format!(
        "the command could not be run: {}",
        status
            .message
            .as_deref()
            .unwrap_or("the API server gave no reason")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    fn failure(reason: &str, causes: Vec<StatusCause>, message: &str) -> Status {
        Status {
            status: Some("Failure".into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            details: Some(StatusDetails {
                causes: Some(causes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_come_from_the_final_status() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&ok).unwrap(), 0);
        let three = failure(
            "NonZeroExitCode",
            vec![StatusCause { reason: Some("ExitCode".into()), message: Some("3".into()), field: None }],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        );
        assert_eq!(exit_code(&three).unwrap(), 3);
    }

    #[test]
    fn a_status_that_is_not_an_exit_is_an_error_with_the_servers_message() {
        let e = exit_code(&failure(
            "InternalError",
            vec![],
            "container not found (\"pg\")",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the command could not be run: container not found (\"pg\")"
        );
        let no_code = failure("NonZeroExitCode", vec![], "odd");
        assert!(exit_code(&no_code).is_err());
    }
}
