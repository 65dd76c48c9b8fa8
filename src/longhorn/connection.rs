//! The longhorn provider block: the shared Kubernetes connection
//! ([`crate::kubernetes::connection`]) plus the namespace Longhorn runs in,
//! and what the first request checks: Longhorn's Volume CRD is served.

use crate::cty::{Type, Value};
use crate::framework::{validators, Attribute, Diagnostics};
use crate::kubernetes::connection as kube_connection;

pub use kube_connection::{ConnectError, Connection};

pub const DEFAULT_NAMESPACE: &str = "longhorn-system";
pub const GROUP_VERSION: &str = "longhorn.io/v1beta2";
pub const CRD_NAME: &str = "volumes.longhorn.io";

/// What the longhorn provider needs the API server to serve.
pub const REQUIRED: kube_connection::Required = kube_connection::Required {
    group_version: GROUP_VERSION,
    plural: "volumes",
    missing: crd_missing,
    grant: "Grant the provider's user access to volumes.longhorn.io volumes (and \
            PersistentVolumes / PersistentVolumeClaims when they are managed).",
};

/// A connection that checks for Longhorn on first use.
pub fn connection() -> Connection {
    Connection::new(REQUIRED)
}

pub fn attributes() -> Vec<Attribute> {
    let mut attributes = kube_connection::attributes();
    attributes.push(
        Attribute::optional("namespace", Type::String)
            .validate(validators::not_blank())
            .describe(format!(
                "Namespace Longhorn runs in, where volumes are made. Defaults to `{DEFAULT_NAMESPACE}`."
            )),
    );
    attributes
}

pub fn validate(config: &Value, diags: &mut Diagnostics) {
    kube_connection::validate(config, diags);
}

/// The configured Longhorn namespace; `None` while unknown.
pub fn namespace(connection: &Connection) -> Option<String> {
    match connection.setting("namespace") {
        Value::Unknown => None,
        Value::String(s) => Some(s),
        _ => Some(DEFAULT_NAMESPACE.to_string()),
    }
}

pub fn crd_missing(url: &str) -> ConnectError {
    ConnectError::new(
        format!("Longhorn is not installed: {CRD_NAME} is missing"),
        format!(
            "The API server at {url} does not serve the {CRD_NAME} custom resource \
             ({GROUP_VERSION} Volume). Install Longhorn in the cluster first (its CRDs come with \
             it), or point the provider at the cluster that runs it."
        ),
    )
}
