//! The provider executables driven the way Terraform's go-plugin client drives
//! them: environment handshake, the stdout line, AutoMTLS with the printed
//! certificate, GetSchema, gRPC health, GRPCController/Shutdown, signals and
//! debug mode. No Terraform needed; these run on every `cargo test`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use shardform::plugin::wire::plugin::grpc_controller_client::GrpcControllerClient;
use shardform::plugin::wire::plugin::Empty;
use shardform::plugin::wire::tfplugin5::provider_client::ProviderClient;
use shardform::plugin::wire::tfplugin5::{diagnostic, get_provider_schema};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
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
        Self { child, stdout: rx }
    }

    /// Launched as Terraform 1.0.3 does, with AutoMTLS.
    fn spawn_tls(exe: &str) -> Self {
        let client_cert = client_certificate_pem();
        Self::spawn(
            exe,
            &[],
            &[
                COOKIE,
                ("PLUGIN_PROTOCOL_VERSIONS", "6,5"),
                ("PLUGIN_CLIENT_CERT", &client_cert),
            ],
        )
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

/// Stand-in for Terraform's client certificate (any PEM will do: it is not verified).
fn client_certificate_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .unwrap()
        .cert
        .pem()
}

/// The parsed go-plugin handshake line.
#[derive(Debug)]
struct Handshake {
    network: String,
    address: String,
    /// DER of the server certificate; `None` in plaintext.
    cert: Option<Vec<u8>>,
}

/// Checks `^1\|5\|(tcp|unix)\|[^|]+\|grpc\|CERT$` where CERT is unpadded standard base64
/// (`[A-Za-z0-9+/]+`) when `tls`, empty otherwise.
fn parse_handshake(line: &str, tls: bool) -> Handshake {
    let fields: Vec<&str> = line.split('|').collect();
    let [core, app, network, address, protocol, cert] = fields[..] else {
        panic!("handshake line needs 6 fields: {line:?}");
    };
    assert_eq!((core, app, protocol), ("1", "5", "grpc"), "{line:?}");
    assert!(matches!(network, "tcp" | "unix"), "{line:?}");
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
        network: network.to_owned(),
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

/// Connects as go-plugin does: TLS trusting exactly the printed certificate,
/// for server name `localhost`, or plaintext.
async fn connect(handshake: &Handshake) -> Channel {
    let endpoint = match (handshake.network.as_str(), &handshake.cert) {
        ("unix", _) => Endpoint::from_shared(format!("unix:{}", handshake.address)),
        (_, Some(_)) => Endpoint::from_shared(format!("https://{}", handshake.address)),
        (_, None) => Endpoint::from_shared(format!("http://{}", handshake.address)),
    }
    .unwrap();
    let endpoint = match &handshake.cert {
        Some(der) => endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(pem(der)))
                    .domain_name("localhost"),
            )
            .unwrap(),
        None => endpoint,
    };
    timeout(RPC, endpoint.connect())
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e:?}", handshake.address))
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
        let channel = connect(&handshake).await;
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
        assert_schema(&connect(&handshake).await).await;
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
    let channel = connect(&handshake).await;

    plugin.signal(libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(plugin.is_running(), "SIGINT killed the provider");
    assert_schema(&channel).await;
    // A new connection works too.
    assert_schema(&connect(&handshake).await).await;
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
        network: "unix".into(),
        address: socket.clone(),
        cert: None,
    };
    let channel = connect(&handshake).await;
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
