//! The provider block of every provider that talks to the Kubernetes API:
//! how it reaches the API server, like the Kubernetes provider (kubeconfig
//! file and context, or host and credentials given directly, or in-cluster),
//! and the lazily made client.
//!
//! Nothing here assumes a local kubeconfig: Terraform Cloud passes host and
//! credentials as variables. The client is made on first use, at apply or
//! read, so values unknown at plan time (a cluster created in the same
//! apply) are planned, not rejected. Each provider says which resource the
//! server must serve ([`Required`]); the first request checks it.

use std::env;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::sync::Mutex;

use crate::cty::{Type, Value};
use crate::framework::{AttrPath, Attribute, Diagnostics};

pub const CONFIG_PATH_ENV: &str = "KUBE_CONFIG_PATH";

pub fn attributes() -> Vec<Attribute> {
    vec![
        Attribute::optional("config_path", Type::String).describe(format!(
            "Path of a kubeconfig file. Defaults to the `{CONFIG_PATH_ENV}` environment variable. \
             Conflicts with `host`."
        )),
        Attribute::optional("config_context", Type::String).describe(
            "Context of the kubeconfig file to use; its current context when not set.",
        ),
        Attribute::optional("host", Type::String).describe(
            "URL of the Kubernetes API server, such as `https://203.0.113.10:6443`, for \
             credentials given here rather than in a kubeconfig file (Terraform Cloud variables).",
        ),
        Attribute::optional("token", Type::String)
            .sensitive()
            .describe("Bearer token to authenticate with (with `host`)."),
        Attribute::optional("client_certificate", Type::String).describe(
            "PEM client certificate to authenticate with (with `host` and `client_key`).",
        ),
        Attribute::optional("client_key", Type::String)
            .sensitive()
            .describe("PEM private key of `client_certificate`."),
        Attribute::optional("cluster_ca_certificate", Type::String).describe(
            "PEM certificate(s) of the authority that signed the API server's certificate (with `host`).",
        ),
        Attribute::optional("insecure", Type::Bool).describe(
            "Skip verifying the API server's TLS certificate. Defaults to `false`: the \
             certificate is verified.",
        ),
    ]
}

pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let set = |name: &str| !config.attr(name).is_null();
    if set("host") && set("config_path") {
        diags.error_at(
            AttrPath::root("host"),
            "Conflicting connection settings",
            "Set either host (with token or client_certificate) or config_path, not both.",
        );
    }
    for (name, pair) in [
        ("client_certificate", "client_key"),
        ("client_key", "client_certificate"),
    ] {
        if set(name) && !set(pair) {
            diags.error_at(
                AttrPath::root(name),
                "Incomplete client certificate",
                format!("{name} needs {pair} as well."),
            );
        }
    }
    if !set("host") {
        for name in [
            "token",
            "client_certificate",
            "client_key",
            "cluster_ca_certificate",
        ] {
            if set(name) {
                diags.error_at(
                    AttrPath::root(name),
                    "Missing host",
                    format!("{name} is used with host: set host to the API server's URL, or use config_path."),
                );
            }
        }
    }
    if let Some(host) = config.attr("host").as_str() {
        let rest = host
            .strip_prefix("https://")
            .or_else(|| host.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(' ')) {
            diags.error_at(
                AttrPath::root("host"),
                "Invalid host",
                format!("host must be a URL such as \"https://203.0.113.10:6443\", got {host:?}."),
            );
        }
    }
}

/// Why the API server cannot be used, said for a diagnostic.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub summary: String,
    pub detail: String,
}

impl ConnectError {
    pub fn new(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        ConnectError {
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    pub fn report(&self, diags: &mut Diagnostics) {
        diags.error(self.summary.clone(), self.detail.clone());
    }
}

/// What a provider needs the API server to serve, checked by the first
/// request: one discovery of `group_version` tells whether the server
/// answers, trusts us, accepts the credentials, and serves `plural`.
#[derive(Clone, Copy)]
pub struct Required {
    /// Such as `longhorn.io/v1beta2` or `apps/v1`.
    pub group_version: &'static str,
    /// The resource that must be listed there, such as `volumes`.
    pub plural: &'static str,
    /// The error when it is not served (a CRD not installed), for the server's URL.
    pub missing: fn(&str) -> ConnectError,
    /// What a 403 answer asks the user to grant, as a sentence.
    pub grant: &'static str,
}

/// The provider's connection: the configuration Terraform gave, and the
/// client made from it on first use.
pub struct Connection {
    required: Required,
    config: RwLock<Value>,
    url: RwLock<String>,
    client: Mutex<Option<Result<Client, ConnectError>>>,
}

impl Connection {
    pub fn new(required: Required) -> Self {
        Connection {
            required,
            config: RwLock::new(Value::Null),
            url: RwLock::new(String::new()),
            client: Mutex::new(None),
        }
    }

    pub fn set(&self, config: &Value) {
        *self.config.write().expect("connection lock") = config.clone();
    }

    /// False while some provider setting is unknown (plan of a cluster
    /// being created in the same apply).
    pub fn is_known(&self) -> bool {
        self.config
            .read()
            .expect("connection lock")
            .is_wholly_known()
    }

    /// A provider-block attribute as configured (a provider's own, such as
    /// longhorn's `namespace`); null when not set.
    pub fn setting(&self, name: &str) -> Value {
        self.config.read().expect("connection lock").attr(name).clone()
    }

    /// The API server's URL, once connected.
    pub fn url(&self) -> String {
        self.url.read().expect("connection lock").clone()
    }

    /// The client, made and checked (reachable, trusted, credentials
    /// accepted, the required resource served) on first use.
    pub async fn client(&self) -> Result<Client, ConnectError> {
        let mut slot = self.client.lock().await;
        if let Some(result) = slot.as_ref() {
            return result.clone();
        }
        let config = self.config.read().expect("connection lock").clone();
        let result = connect(&config, &self.required).await.map(|(client, url)| {
            *self.url.write().expect("connection lock") = url;
            client
        });
        *slot = Some(result.clone());
        result
    }
}

async fn connect(config: &Value, required: &Required) -> Result<(Client, String), ConnectError> {
    if !config.is_wholly_known() {
        return Err(ConnectError::new(
            "Provider configuration not known",
            "Some provider setting is still unknown; it becomes known during apply.",
        ));
    }
    let kube_config = kube_config(config).await?;
    let url = kube_config.cluster_url.to_string();
    let client = Client::try_from(kube_config).map_err(|e| {
        ConnectError::new(
            "Cannot set up the Kubernetes client",
            format!("For the API server at {url}: {}", chain(&e)),
        )
    })?;
    check(&client, &url, required).await?;
    Ok((client, url))
}

/// One request that tells whether the server answers, trusts us, and serves
/// what the provider needs.
async fn check(client: &Client, url: &str, required: &Required) -> Result<(), ConnectError> {
    let mut attempt = 0;
    let resources = loop {
        attempt += 1;
        match client.list_api_group_resources(required.group_version).await {
            Ok(list) => break list,
            Err(e) if attempt < 3 && super::api::is_transient(&e) => {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Err((required.missing)(url)),
            Err(e) => return Err(describe(&e, url, required.grant)),
        }
    };
    if !resources.resources.iter().any(|r| r.name == required.plural) {
        return Err((required.missing)(url));
    }
    Ok(())
}

/// Turns a client error into what a user can act on. Never shows credentials:
/// kube's errors carry none.
/// `grant` is what a 403 asks the user to grant.
pub fn describe(error: &kube::Error, url: &str, grant: &str) -> ConnectError {
    if let kube::Error::Api(status) = error {
        return match status.code {
            401 => ConnectError::new(
                "Kubernetes credentials rejected (401 Unauthorized)",
                format!(
                    "The API server at {url} did not accept the provider's credentials. Check the \
                     token or client certificate (or the kubeconfig user) and that it is not expired."
                ),
            ),
            403 => ConnectError::new(
                "Forbidden by the Kubernetes API server (403)",
                format!(
                    "The API server at {url} refused: {}. {grant}",
                    status.message
                ),
            ),
            code => ConnectError::new(
                format!("Kubernetes API error ({code} {})", status.reason),
                format!("The API server at {url} answered: {}", status.message),
            ),
        };
    }
    let text = chain(error);
    let lower = text.to_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        ConnectError::new(
            "The Kubernetes API server's certificate is not trusted",
            format!(
                "TLS verification of {url} failed: {text}. Give the authority that signed it in \
                 cluster_ca_certificate (or in the kubeconfig's certificate-authority-data), or, for \
                 a test cluster only, set insecure = true."
            ),
        )
    } else {
        ConnectError::new(
            "Cannot reach the Kubernetes API server",
            format!(
                "No answer from {url}: {text}. Check host / the kubeconfig's server, and that the \
                 API server is reachable from where Terraform runs."
            ),
        )
    }
}

/// An error with its sources, one after the other.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

async fn kube_config(config: &Value) -> Result<Config, ConnectError> {
    let insecure = config.attr("insecure").as_bool().unwrap_or(false);
    let mut kube_config = if let Some(host) = config.attr("host").as_str() {
        from_host(host, config).await?
    } else if let Some(path) = config_path(config) {
        from_file(path, config.attr("config_context").as_str()).await?
    } else if env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        Config::incluster().map_err(|e| {
            ConnectError::new(
                "Cannot use the in-cluster service account",
                format!(
                    "Running in a pod, but its service account is unusable: {}",
                    chain(&e)
                ),
            )
        })?
    } else {
        return Err(ConnectError::new(
            "No Kubernetes credentials",
            format!(
                "Set config_path (or {CONFIG_PATH_ENV}) to a kubeconfig file, or host with token or \
                 client_certificate + client_key, or run Terraform in a pod with a service account. \
                 The provider never reads ~/.kube/config by itself."
            ),
        ));
    };
    if insecure {
        kube_config.accept_invalid_certs = true;
    }
    kube_config.connect_timeout = Some(Duration::from_secs(10));
    kube_config.read_timeout = Some(Duration::from_secs(60));
    Ok(kube_config)
}

fn config_path(config: &Value) -> Option<PathBuf> {
    let text = config
        .attr("config_path")
        .as_str()
        .map(str::to_string)
        .or_else(|| env::var(CONFIG_PATH_ENV).ok().filter(|p| !p.is_empty()))?;
    Some(match (text.strip_prefix("~/"), env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    })
}

async fn from_file(path: PathBuf, context: Option<&str>) -> Result<Config, ConnectError> {
    if !path.is_file() {
        return Err(ConnectError::new(
            "Kubeconfig file not found",
            format!(
                "config_path (or {CONFIG_PATH_ENV}) names {}, which is not a readable file.",
                path.display()
            ),
        ));
    }
    let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| {
        ConnectError::new(
            "Unreadable kubeconfig file",
            format!("{}: {}", path.display(), chain(&e)),
        )
    })?;
    if let Some(context) = context {
        if !kubeconfig.contexts.iter().any(|c| c.name == context) {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(ConnectError::new(
                "Unknown kubeconfig context",
                format!(
                    "config_context is {context:?}, but {} has only the contexts {known:?}.",
                    path.display()
                ),
            ));
        }
    }
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            ConnectError::new(
                "Unusable kubeconfig",
                format!("{}: {}", path.display(), chain(&e)),
            )
        })
}

/// Host and credentials given in the provider block, made into the one-context
/// kubeconfig they amount to, so kube loads them the way it loads files.
async fn from_host(host: &str, config: &Value) -> Result<Config, ConnectError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut cluster = json!({ "server": host });
    if let Some(ca) = config.attr("cluster_ca_certificate").as_str() {
        cluster["certificate-authority-data"] = json!(b64(ca));
    }
    let mut user = json!({});
    if let Some(token) = config.attr("token").as_str() {
        user["token"] = json!(token);
    }
    if let (Some(cert), Some(key)) = (
        config.attr("client_certificate").as_str(),
        config.attr("client_key").as_str(),
    ) {
        user["client-certificate-data"] = json!(b64(cert));
        user["client-key-data"] = json!(b64(key));
    }
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "provider", "cluster": cluster }],
        "users": [{ "name": "provider", "user": user }],
        "contexts": [{ "name": "provider", "context": { "cluster": "provider", "user": "provider" } }],
        "current-context": "provider",
    });
    let kubeconfig: Kubeconfig = serde_json::from_value(document)
        .map_err(|e| ConnectError::new("Invalid provider credentials", format!("{e}")))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            // The error names the bad part (a PEM that does not parse), never its content.
            ConnectError::new(
                "Invalid provider credentials",
                format!("host, token or certificates cannot be used: {}", chain(&e)),
            )
        })
}
