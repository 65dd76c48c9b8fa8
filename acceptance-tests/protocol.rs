//! The provider executables driven the way Terraform's go-plugin client drives
//! them: environment handshake, the stdout line, a private unix socket,
//! AutoMTLS with the printed certificate and the client certificate passed in
//! `PLUGIN_CLIENT_CERT` (and nothing else), GetSchema, gRPC health,
//! GRPCController/Shutdown, signals and debug mode. No Terraform needed.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use shardform::plugin::wire::plugin::grpc_controller_client::GrpcControllerClient;
use shardform::plugin::wire::plugin::Empty;
use shardform::plugin::wire::tfplugin5::provider_client::ProviderClient;
use shardform::plugin::wire::tfplugin5::{diagnostic, get_provider_schema};
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const COOKIE: (&str, &str) = (
    "TF_PLUGIN_MAGIC_COOKIE",
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
);
/// Everything go-plugin passes; cleared so the test's own environment cannot leak in.
const PLUGIN_ENV: &[&str] = &[
    "TF_PLUGIN_MAGIC_COOKIE",
    "PLUGIN_PROTOCOL_VERSIONS",
    "PLUGIN_CLIENT_CERT",
    "PLUGIN_MIN_PORT",
    "PLUGIN_MAX_PORT",
    "PLUGIN_UNIX_SOCKET_DIR",
    "TF_DISABLE_PLUGIN_TLS",
    "TF_REATTACH_PROVIDERS",
];
const STARTUP: Duration = Duration::from_secs(20);
const RPC: Duration = Duration::from_secs(10);

fn executables() -> [(&'static str, &'static str); 3] {
    [
        ("citus", env!("CARGO_BIN_EXE_terraform-provider-citus")),
        ("pgpool", env!("CARGO_BIN_EXE_terraform-provider-pgpool")),
        (
            "longhorn",
            env!("CARGO_BIN_EXE_terraform-provider-longhorn"),
        ),
    ]
}

/// A provider process that is killed (and reaped) when the test ends, pass or fail.
struct Plugin {
    child: Child,
    stdout: mpsc::UnboundedReceiver<String>,
    /// The client identity whose certificate went into `PLUGIN_CLIENT_CERT`.
    client: Option<ClientIdentity>,
}

/// A client certificate and key, as Terraform makes one per run.
#[derive(Clone)]
struct ClientIdentity {
    cert_pem: String,
    key_pem: String,
}

impl ClientIdentity {
    /// P-256 (which this test's TLS stack can sign with); the plugin pins
    /// whatever certificate it is given. Terraform's own P-521 certificate is
    /// exercised by every acceptance test and by `a_p521_client_certificate_is_accepted`.
    fn generate() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        ClientIdentity {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl Plugin {
    fn spawn(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(exe);
        for key in PLUGIN_ENV {
            cmd.env_remove(key);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()); // logs show up under --nocapture
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdout: rx,
            client: None,
        }
    }

    /// Launched as Terraform 1.0.3 does, with AutoMTLS.
    fn spawn_tls(exe: &str) -> Self {
        let client = ClientIdentity::generate();
        Self::spawn_with_client_cert(exe, client.clone(), &client.cert_pem)
    }

    /// Launched with `client_cert_pem` in `PLUGIN_CLIENT_CERT`; `client` is what the test connects with.
    fn spawn_with_client_cert(exe: &str, client: ClientIdentity, client_cert_pem: &str) -> Self {
        let mut plugin = Self::spawn(
            exe,
            &[],
            &[
                COOKIE,
                ("PLUGIN_PROTOCOL_VERSIONS", "6,5"),
                ("PLUGIN_CLIENT_CERT", client_cert_pem),
            ],
        );
        plugin.client = Some(client);
        plugin
    }

    async fn next_line(&mut self) -> String {
        match timeout(STARTUP, self.stdout.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("stdout closed; exit status {:?}", self.child.try_wait()),
            Err(_) => panic!("no line on stdout within {STARTUP:?}"),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own, not yet reaped child.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "still running {limit:?} after being told to stop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The parsed go-plugin handshake line.
#[derive(Debug)]
struct Handshake {
    address: String,
    /// DER of the server certificate; `None` in plaintext.
    cert: Option<Vec<u8>>,
}

/// Checks `^1\|5\|unix\|[^|]+\|grpc\|CERT$` where CERT is unpadded standard base64
/// (`[A-Za-z0-9+/]+`) when `tls`, empty otherwise.
fn parse_handshake(line: &str, tls: bool) -> Handshake {
    let fields: Vec<&str> = line.split('|').collect();
    let [core, app, network, address, protocol, cert] = fields[..] else {
        panic!("handshake line needs 6 fields: {line:?}");
    };
    assert_eq!((core, app, protocol), ("1", "5", "grpc"), "{line:?}");
    assert_eq!(network, "unix", "go-plugin on Linux serves a unix socket: {line:?}");
    assert!(!address.is_empty(), "{line:?}");
    let cert = if tls {
        let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
        assert!(
            !cert.is_empty() && cert.chars().all(alphabet),
            "cert field of {line:?}"
        );
        Some(
            STANDARD_NO_PAD
                .decode(cert)
                .expect("unpadded standard base64"),
        )
    } else {
        assert_eq!(
            cert, "",
            "plaintext handshake carries no certificate: {line:?}"
        );
        None
    };
    Handshake {
        address: address.to_owned(),
        cert,
    }
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Connects as go-plugin does: over the unix socket, TLS trusting exactly the
/// printed certificate for server name `localhost` and presenting the
/// plugin's client certificate, or plaintext.
async fn connect(plugin: &Plugin, handshake: &Handshake) -> Channel {
    connect_as(handshake, plugin.client.as_ref().map(ClientIdentity::identity))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e:?}", handshake.address))
}

async fn connect_as(
    handshake: &Handshake,
    client: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if handshake.cert.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://localhost")).unwrap();
    if let Some(der) = &handshake.cert {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem(der)))
            .domain_name("localhost");
        if let Some(identity) = client {
            tls = tls.identity(identity);
        }
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let socket = handshake.address.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    timeout(RPC, endpoint.connect_with_connector(connector))
        .await
        .expect("connect timed out")
}

async fn assert_schema(channel: &Channel) {
    let mut client = ProviderClient::new(channel.clone()).max_decoding_message_size(256 << 20);
    let response = timeout(RPC, client.get_schema(get_provider_schema::Request {}))
        .await
        .expect("GetSchema timed out")
        .expect("GetSchema")
        .into_inner();
    assert!(
        response.provider.is_some(),
        "GetSchema has no provider schema"
    );
    let errors: Vec<_> = response
        .diagnostics
        .iter()
        .filter(|d| d.severity == diagnostic::Severity::Error as i32)
        .collect();
    assert!(errors.is_empty(), "GetSchema reported errors: {errors:?}");
}

async fn assert_health_serving(channel: &Channel) {
    let request = HealthCheckRequest {
        service: "plugin".to_owned(),
    };
    let response = timeout(RPC, HealthClient::new(channel.clone()).check(request))
        .await
        .expect("health check timed out")
        .expect("health check")
        .into_inner();
    assert_eq!(response.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn automtls_schema_health_and_prompt_shutdown() {
    for (name, exe) in executables() {
        let mut plugin = Plugin::spawn_tls(exe);
        let line = plugin.next_line().await;
        let handshake = parse_handshake(&line, true);
        let channel = connect(&plugin, &handshake).await;
        assert_schema(&channel).await;
        assert_health_serving(&channel).await;

        // The channel stays open, as Terraform's may: shutdown must not wait on it.
        let mut controller = GrpcControllerClient::new(channel.clone());
        timeout(RPC, controller.shutdown(Empty {}))
            .await
            .expect("Shutdown timed out")
            .unwrap();
        let status = plugin.exit_within(Duration::from_secs(1)).await;
        assert!(
            status.success(),
            "{name}: exit status after Shutdown: {status}"
        );
    }
}

/// GetSchema's outcome over a fresh connection presenting `client`.
async fn schema_call_as(handshake: &Handshake, client: Option<Identity>) -> Result<(), String> {
    let channel = connect_as(handshake, client).await.map_err(|e| format!("connect: {e:?}"))?;
    let mut provider = ProviderClient::new(channel).max_decoding_message_size(256 << 20);
    match timeout(RPC, provider.get_schema(get_provider_schema::Request {})).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!("GetSchema: {status}")),
        Err(_) => Err("GetSchema timed out".into()),
    }
}

#[tokio::test]
async fn only_terraforms_client_certificate_gets_in() {
    for (name, exe) in executables() {
        let mut plugin = Plugin::spawn_tls(exe);
        let handshake = parse_handshake(&plugin.next_line().await, true);

        // The socket sits alone in a fresh directory only its owner can enter.
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let socket = std::path::Path::new(&handshake.address);
        let dir = socket.parent().unwrap();
        let (dir_meta, socket_meta) = (std::fs::metadata(dir).unwrap(), std::fs::metadata(socket).unwrap());
        assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700, "{name}: {}", dir.display());
        assert_eq!(socket_meta.permissions().mode() & 0o777, 0o600, "{name}: {}", socket.display());
        let uid = unsafe { libc::getuid() };
        assert_eq!((dir_meta.uid(), socket_meta.uid()), (uid, uid));

        let refused_anonymous = schema_call_as(&handshake, None).await;
        assert!(refused_anonymous.is_err(), "{name}: a client without a certificate got in");
        let stranger = ClientIdentity::generate().identity();
        let refused_stranger = schema_call_as(&handshake, Some(stranger)).await;
        assert!(refused_stranger.is_err(), "{name}: a client with another certificate got in");
        let terraform = plugin.client.as_ref().unwrap().identity();
        schema_call_as(&handshake, Some(terraform))
            .await
            .unwrap_or_else(|e| panic!("{name}: Terraform's own certificate was refused: {e}"));
        eprintln!("{name}: without a certificate: {}", refused_anonymous.unwrap_err());
        eprintln!("{name}: with another certificate: {}", refused_stranger.unwrap_err());

        // Another local user cannot even connect (the directory is 0700).
        if uid == 0 {
            let out = Command::new("/usr/bin/openssl")
                .args(["s_client", "-unix", &handshake.address])
                .uid(65534)
                .gid(65534)
                .stdin(Stdio::null())
                .output()
                .expect("openssl runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: user nobody connected: {stderr}");
            assert!(stderr.contains("errno=13") || stderr.contains("Permission denied"), "{name}: {stderr}");
        } else {
            eprintln!("{name}: SKIPPED the other-user check: needs root to switch to user nobody");
        }
    }
}

/// Terraform's certificate is ECDSA P-521 and marked as a CA, which ring
/// cannot verify; openssl presents one like it here, outside any Terraform.
#[tokio::test]
async fn a_p521_client_certificate_is_accepted() {
    let dir = tempdir_for("p521");
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    let made = Command::new("/usr/bin/openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521", "-nodes", "-days", "1"])
        .args(["-subj", "/O=HashiCorp/CN=localhost", "-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let (_, exe) = executables()[0];
    let mut plugin = Plugin::spawn_with_client_cert(exe, ClientIdentity::generate(), &cert_pem);
    let handshake = parse_handshake(&plugin.next_line().await, true);
    let server_pem = dir.join("server.pem");
    std::fs::write(&server_pem, pem(handshake.cert.as_ref().unwrap())).unwrap();
    // The HTTP/2 preface; an accepted client gets the server's SETTINGS frame back.
    let h2_exchange = |client: &[&str]| -> Vec<u8> {
        let mut child = Command::new("/usr/bin/openssl")
            .args(["s_client", "-quiet", "-unix", &handshake.address, "-servername", "localhost", "-alpn", "h2"])
            .arg("-CAfile")
            .arg(&server_pem)
            .args(client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        // `-quiet` ignores end of input: give the server time to answer, then hang up.
        std::thread::sleep(Duration::from_secs(2));
        drop(stdin);
        let _ = child.kill();
        child.wait_with_output().unwrap().stdout
    };
    let key_arg = key.to_str().unwrap();
    let cert_arg = cert.to_str().unwrap();
    let accepted = h2_exchange(&["-cert", cert_arg, "-key", key_arg]);
    // A SETTINGS frame: 3-byte length, type 4, flags 0, stream 0.
    assert!(
        accepted.len() >= 9 && accepted[3] == 4 && accepted[5..9] == [0, 0, 0, 0],
        "no HTTP/2 SETTINGS after the P-521 handshake: {accepted:?}"
    );
    let refused = h2_exchange(&[]);
    assert!(refused.is_empty(), "a client without a certificate got an answer: {refused:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir_for(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardform-protocol-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn plaintext_when_terraform_disables_tls() {
    for (_, exe) in executables() {
        let mut plugin = Plugin::spawn(
            exe,
            &[],
            &[
                COOKIE,
                ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
                ("TF_DISABLE_PLUGIN_TLS", "1"),
            ],
        );
        let handshake = parse_handshake(&plugin.next_line().await, false);
        assert_schema(&connect(&plugin, &handshake).await).await;
    }
}

#[test]
fn without_cookie_it_explains_and_exits_1() {
    for (name, exe) in executables() {
        let output = Command::new(exe)
            .env_remove("TF_PLUGIN_MAGIC_COOKIE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(
            output.stdout.is_empty(),
            "{name} printed on stdout: {:?}",
            output.stdout
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("This binary is a plugin"),
            "{name} stderr: {stderr}"
        );
        assert!(
            stderr.contains(name),
            "{name}: message should name the provider: {stderr}"
        );
    }
}

#[test]
fn refuses_a_client_without_protocol_5() {
    let (_, exe) = executables()[0];
    let output = Command::new(exe)
        .envs([COOKIE, ("PLUGIN_PROTOCOL_VERSIONS", "6")])
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "no handshake line: {:?}",
        output.stdout
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("protocol 5"), "stderr: {stderr}");
}

#[tokio::test]
async fn sigint_is_ignored() {
    let (_, exe) = executables()[0];
    let mut plugin = Plugin::spawn_tls(exe);
    let handshake = parse_handshake(&plugin.next_line().await, true);
    let channel = connect(&plugin, &handshake).await;

    plugin.signal(libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(plugin.is_running(), "SIGINT killed the provider");
    assert_schema(&channel).await;
    // A new connection works too.
    assert_schema(&connect(&plugin, &handshake).await).await;
}

#[tokio::test]
async fn debug_mode_prints_reattach_config_and_stops_on_sigterm() {
    let (name, exe) = executables()[0];
    let mut plugin = Plugin::spawn(exe, &["--debug"], &[]);
    let json = loop {
        let line = plugin.next_line().await;
        if let Some(rest) = line.strip_prefix("export TF_REATTACH_PROVIDERS='") {
            break rest.strip_suffix('\'').expect("closing quote").to_owned();
        }
    };
    let value: serde_json::Value = serde_json::from_str(&json).expect("reattach JSON");
    let providers = value
        .as_object()
        .expect("an object keyed by provider address");
    assert_eq!(providers.len(), 1, "{json}");
    let (address, config) = providers.iter().next().unwrap();
    assert!(
        address.ends_with(&format!("/shardform/{name}")),
        "{address}"
    );
    assert_eq!(config["Protocol"], "grpc");
    assert_eq!(config["ProtocolVersion"], 5);
    assert_eq!(config["Pid"], plugin.child.id());
    assert_eq!(config["Test"], true);
    assert_eq!(config["Addr"]["Network"], "unix");
    let socket = config["Addr"]["String"]
        .as_str()
        .expect("socket path")
        .to_owned();

    let handshake = Handshake {
        address: socket.clone(),
        cert: None,
    };
    let channel = connect(&plugin, &handshake).await;
    assert_schema(&channel).await;
    assert_health_serving(&channel).await;

    plugin.signal(libc::SIGTERM);
    let status = plugin.exit_within(Duration::from_secs(3)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        !std::path::Path::new(&socket).exists(),
        "socket {socket} left behind"
    );
}
