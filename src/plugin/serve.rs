//! The provider process as go-plugin expects it: check the handshake, listen on
//! a unix socket in a private directory (mutual TLS under AutoMTLS, taking
//! only Terraform's own client certificate), print the handshake line, serve
//! the provider, gRPC health and the controller, and exit promptly when told to.
//!
//! With `--debug` the provider instead serves plaintext on such a socket until
//! Ctrl-C and prints a `TF_REATTACH_PROVIDERS` value for Terraform to attach to.

use crate::plugin::client_cert::{BadClientCertificate, PinnedClientCert};
use crate::plugin::handshake::{self, HandshakeError};
use crate::plugin::logging;
use crate::plugin::tls::{ServerIdentity, TlsError};
use crate::plugin::wire::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use crate::plugin::wire::plugin::Empty;
use crate::plugin::wire::tfplugin5::provider_server::{Provider, ProviderServer};
use futures_util::Stream;
use std::future::Future;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use std::{env, fmt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::{Connected, Router};
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

/// terraform-plugin-go's limit; Terraform sends whole schemas and states.
const MAX_MESSAGE_SIZE: usize = 256 << 20;
/// The name go-plugin's client health-checks.
const HEALTH_SERVICE: &str = "plugin";
/// How long open connections may take to close after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the provider process and returns its exit code. `registry_address` is
/// the provider's source address, e.g. `registry.terraform.io/shardform/citus`.
pub fn run<P>(provider: P, registry_address: &'static str) -> ExitCode
where
    P: Provider,
{
    logging::init(&log_module(registry_address));
    let debug = env::args().skip(1).any(|arg| arg == "--debug");
    let result = if debug {
        serve_debug(provider, registry_address)
    } else {
        serve_plugin(provider)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Handshake(HandshakeError::NotLaunchedAsPlugin)) => {
            eprintln!("{}", handshake::not_a_plugin_message(registry_address));
            ExitCode::FAILURE
        }
        Err(err) => {
            // Plain text: Terraform shows a dead plugin's stderr as is.
            eprintln!("{registry_address}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that can stop the provider process from serving.
#[derive(Debug)]
pub enum ServeError {
    Handshake(HandshakeError),
    Tls(TlsError),
    ClientCertificate(BadClientCertificate),
    /// An operating-system call failed; `what` says which.
    Io {
        what: &'static str,
        source: io::Error,
    },
    Transport(tonic::transport::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handshake(e) => e.fmt(f),
            Self::Tls(e) => e.fmt(f),
            Self::ClientCertificate(e) => e.fmt(f),
            Self::Io { what, source } => write!(f, "cannot {what}: {source}"),
            Self::Transport(e) => write!(f, "gRPC server failed: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Handshake(e) => Some(e),
            Self::Tls(e) => Some(e),
            Self::ClientCertificate(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            Self::Transport(e) => Some(e),
        }
    }
}

impl From<HandshakeError> for ServeError {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl From<TlsError> for ServeError {
    fn from(e: TlsError) -> Self {
        Self::Tls(e)
    }
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// `registry.terraform.io/shardform/citus` logs as `shardform.citus`.
fn log_module(registry_address: &str) -> String {
    let mut parts = registry_address.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(kind), Some(namespace)) => format!("{namespace}.{kind}"),
        _ => registry_address.to_owned(),
    }
}

fn env_var(key: &str) -> Option<String> {
    env::var(key).ok()
}

fn runtime() -> Result<tokio::runtime::Runtime, ServeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_error("start the async runtime"))
}

// ---------------------------------------------------------------------------
// Plugin mode (launched by Terraform)

fn serve_plugin<P: Provider>(provider: P) -> Result<(), ServeError> {
    handshake::check_cookie(env_var(handshake::MAGIC_COOKIE_KEY).as_deref())?;
    handshake::negotiate_version(env_var(handshake::PROTOCOL_VERSIONS_KEY).as_deref())?;
    // AutoMTLS: Terraform passes its certificate; an empty value means no TLS (as in go-plugin).
    let tls = match env_var(handshake::CLIENT_CERT_KEY) {
        Some(pem) if !pem.trim().is_empty() => {
            let clients = PinnedClientCert::from_pem(&pem).map_err(ServeError::ClientCertificate)?;
            Some((ServerIdentity::generate()?, clients))
        }
        _ => None,
    };
    let socket_dir = env_var(handshake::UNIX_SOCKET_DIR_KEY)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        ignore_sigint()?;
        let socket = PrivateSocket::create(&socket_dir)?;
        let listener = socket.listen()?;
        let shutdown = Arc::new(Notify::new());
        let router = router(provider, Controller::Exit(shutdown.clone())).await;
        let cert = tls.as_ref().map(|(identity, _)| identity.cert_der());
        print_stdout(&handshake::handshake_line(socket.path(), cert))?;
        log::debug!(
            "serving plugin protocol 5 on {}, TLS: {}",
            socket.path().display(),
            tls.is_some()
        );
        let stop = async move { shutdown.notified().await };
        match &tls {
            Some((identity, clients)) => {
                let incoming = tls_incoming(listener, identity.acceptor(clients.clone())?);
                serve_until(router, incoming, stop).await
            }
            None => serve_until(router, UnixListenerStream::new(listener), stop).await,
        }
        // `socket` drops here: the socket and its directory are removed.
    });
    // Tasks still running (an accept loop, a stuck provider call) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Ctrl-C in a terminal signals the whole process group, providers included,
/// but Terraform cancels through the `Stop` RPC and must still get the answer
/// of an apply in flight: SIGINT must not kill the provider. A handler (rather than
/// SIG_IGN) keeps the default disposition for processes the provider spawns.
fn ignore_sigint() -> Result<(), ServeError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_error("handle SIGINT"))?;
    tokio::spawn(async move {
        while sigint.recv().await.is_some() {
            log::debug!("ignoring SIGINT: Terraform cancels through the Stop RPC");
        }
    });
    Ok(())
}

/// Accepts connections and runs each TLS handshake in its own task, so a
/// slow or broken client cannot hold up the others.
fn tls_incoming(
    listener: UnixListener,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = Result<TlsStream<UnixStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return, // the server stopped: close the listener
            };
            match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(tls_handshake(acceptor.clone(), stream, tx.clone()));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    log::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

async fn tls_handshake(
    acceptor: TlsAcceptor,
    stream: UnixStream,
    tx: mpsc::Sender<Result<TlsStream<UnixStream>, io::Error>>,
) {
    let peer = peer_description(&stream);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let _ = tx.send(Ok(tls)).await; // fails only when the server is stopping
        }
        // A refused client certificate ends here too: the connection is dropped.
        Ok(Err(e)) => log::warn!("TLS handshake with {peer} failed: {e}"),
        Err(_) => log::warn!("TLS handshake with {peer} timed out"),
    }
}

/// "pid N (uid U)" of a connecting process, for the log.
fn peer_description(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => format!(
            "pid {} (uid {})",
            cred.pid().map_or("?".to_string(), |p| p.to_string()),
            cred.uid()
        ),
        Err(_) => "a local process".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Debug mode (`--debug`, started by a developer)

fn serve_debug<P: Provider>(provider: P, registry_address: &str) -> Result<(), ServeError> {
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let socket = PrivateSocket::create(&env::temp_dir())?;
        let listener = socket.listen()?;
        let stop = termination_signal()?;
        let router = router(provider, Controller::Ignore).await;
        let reattach = reattach_json(registry_address, std::process::id(), socket.path());
        eprintln!(
            "Provider {registry_address} is running in debug mode. To attach Terraform, run \
             this in the shell where you run terraform; press Ctrl-C here to stop the provider:"
        );
        print_stdout(&format!("export TF_REATTACH_PROVIDERS='{reattach}'"))?;
        serve_until(router, UnixListenerStream::new(listener), stop).await
        // `socket` drops here: the socket and its directory are removed.
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Resolves on SIGINT or SIGTERM (in debug mode Ctrl-C is how one stops).
fn termination_signal() -> Result<impl Future<Output = ()>, ServeError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io_error("handle SIGINT"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io_error("handle SIGTERM"))?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// A socket in a fresh directory of mode 0700, as go-plugin makes them: no
/// other user can connect to it or put anything in its place. Both are
/// removed on drop.
struct PrivateSocket {
    dir: PathBuf,
    path: PathBuf,
}

impl PrivateSocket {
    fn create(parent: &Path) -> Result<Self, ServeError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = parent.join(format!("plugin-shardform-{}-{nanos:09}", std::process::id()));
        // Create-new with 0700 (never an existing directory someone prepared).
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_error("create the plugin socket directory"))?;
        let path = dir.join("plugin.sock");
        let _ = SERVING_SOCKET.set((dir.clone(), path.clone()));
        Ok(Self { dir, path })
    }

    fn listen(&self) -> Result<UnixListener, ServeError> {
        use std::os::unix::fs::PermissionsExt as _;
        let listener = UnixListener::bind(&self.path).map_err(io_error("bind the plugin socket"))?;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("restrict the plugin socket"))?;
        Ok(listener)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateSocket {
    fn drop(&mut self) {
        remove_socket(&self.dir, &self.path);
    }
}

/// The process's socket, for [`exit_soon`], which exits without unwinding.
static SERVING_SOCKET: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();

fn remove_socket(dir: &Path, path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir(dir);
}

/// The `TF_REATTACH_PROVIDERS` value: provider address to go-plugin's ReattachConfig.
fn reattach_json(registry_address: &str, pid: u32, socket: &Path) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reattach<'a> {
        protocol: &'a str,
        protocol_version: u32,
        pid: u32,
        test: bool,
        addr: Addr<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Addr<'a> {
        network: &'a str,
        string: &'a str,
    }
    let socket = socket.to_string_lossy();
    let config = Reattach {
        protocol: "grpc",
        protocol_version: handshake::PROTOCOL_VERSION,
        pid,
        test: true,
        addr: Addr {
            network: "unix",
            string: &socket,
        },
    };
    let providers = std::collections::BTreeMap::from([(registry_address, config)]);
    serde_json::to_string(&providers).expect("strings and numbers always serialize")
}

// ---------------------------------------------------------------------------
// Shared by both modes

/// The provider, gRPC health ("plugin" serving) and the controller.
async fn router<P: Provider>(provider: P, controller: Controller) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(HEALTH_SERVICE, ServingStatus::Serving)
        .await;
    let provider = ProviderServer::new(provider)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Server::builder()
        .add_service(provider)
        .add_service(health_service)
        .add_service(GrpcControllerServer::new(controller))
}

/// Serves until the server fails or `stop` resolves; then shuts down
/// gracefully, giving open connections [`SHUTDOWN_GRACE`] to close.
async fn serve_until<I, IO, IE>(
    router: Router,
    incoming: I,
    stop: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = Notify::new();
    let server = router.serve_with_incoming_shutdown(incoming, graceful.notified());
    tokio::pin!(server, stop);
    tokio::select! {
        result = &mut server => return result.map_err(ServeError::Transport),
        () = &mut stop => {}
    }
    graceful.notify_one();
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.map_err(ServeError::Transport),
        Err(_) => {
            log::debug!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
            Ok(())
        }
    }
}

/// Prints one line on stdout and flushes: Terraform reads it from a pipe.
fn print_stdout(line: &str) -> Result<(), ServeError> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(io_error("write the handshake to stdout"))
}

/// go-plugin's `plugin.GRPCController`: Terraform calls `Shutdown` when it is
/// done with the process and otherwise waits 2 s before killing it.
enum Controller {
    /// Stop serving (wakes the `Notify`) and exit the process.
    Exit(Arc<Notify>),
    /// Debug mode: Terraform attached to a provider it does not own.
    Ignore,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        match self {
            Self::Exit(shutdown) => {
                log::debug!("shutdown requested by Terraform");
                shutdown.notify_one();
                exit_soon();
            }
            Self::Ignore => log::info!("debug mode: ignoring Shutdown; stop with Ctrl-C"),
        }
        Ok(Response::new(Empty {}))
    }
}

/// Hard fallback for a graceful shutdown that hangs (a provider call that
/// never returns, a runtime that will not stop): a plain thread, so it fires
/// even when every runtime worker is blocked.
fn exit_soon() {
    std::thread::spawn(|| {
        std::thread::sleep(SHUTDOWN_GRACE);
        if let Some((dir, path)) = SERVING_SOCKET.get() {
            remove_socket(dir, path);
        }
        std::process::exit(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_module_from_registry_address() {
        assert_eq!(
            log_module("registry.terraform.io/shardform/citus"),
            "shardform.citus"
        );
        assert_eq!(log_module("citus"), "citus");
    }

    #[test]
    fn reattach_json_is_what_terraform_parses() {
        let json = reattach_json(
            "registry.terraform.io/shardform/citus",
            42,
            Path::new("/tmp/shardform-1/provider.sock"),
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"registry.terraform.io/shardform/citus": {
                "Protocol": "grpc", "ProtocolVersion": 5, "Pid": 42, "Test": true,
                "Addr": {"Network": "unix", "String": "/tmp/shardform-1/provider.sock"}
            }})
        );
        // Pasted inside single quotes in a shell.
        assert!(!json.contains('\''));
    }

    #[test]
    fn private_socket_is_owner_only_and_removed() {
        use std::os::unix::fs::PermissionsExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let socket = PrivateSocket::create(&env::temp_dir()).unwrap();
        let dir = socket.dir.clone();
        let _listener = runtime.block_on(async { socket.listen() }).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(socket.path()), 0o600);
        drop(socket);
        assert!(!dir.exists());
    }
}
