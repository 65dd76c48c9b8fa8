//! The Kubernetes objects this provider touches, and the one place requests
//! are retried: transient failures (5xx, 429, a dropped connection) of
//! idempotent requests (GET, server-side apply, DELETE) are tried again with
//! backoff; anything else is reported.

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;

/// The field manager of every server-side apply this provider makes.
pub const FIELD_MANAGER: &str = "shardform-longhorn";
pub const FINALIZER: &str = "longhorn.io";
pub const CSI_DRIVER: &str = "driver.longhorn.io";

const ATTEMPTS: u32 = 5;

pub fn volume_resource() -> ApiResource {
    ApiResource {
        group: "longhorn.io".into(),
        version: "v1beta2".into(),
        api_version: "longhorn.io/v1beta2".into(),
        kind: "Volume".into(),
        plural: "volumes".into(),
    }
}

pub fn volumes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &volume_resource())
}

/// Errors worth another try of an idempotent request.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 429 || (status.code >= 500 && status.code != 501)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            // A refused connection or an untrusted certificate will not get better.
            let text = super::connection::chain(error).to_lowercase();
            !(text.contains("certificate") || text.contains("connection refused"))
        }
        kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Runs an idempotent request, trying again on transient failures.
pub async fn retrying<T, F, Fut>(what: &str, mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                log::warn!(
                    "{what}: {} (attempt {attempt} of {ATTEMPTS}, trying again)",
                    super::connection::chain(&e)
                );
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// GET that says "gone" as `None`.
pub async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    retrying(what, || api.get_opt(name)).await
}

/// A text for the user from an API error, with the server's message.
pub fn explain(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let mut text = format!("{} ({} {})", status.message, status.code, status.reason);
            if let Some(details) = &status.details {
                for cause in &details.causes {
                    text.push_str(&format!("; {}: {}", cause.field, cause.message));
                }
            }
            text
        }
        other => super::connection::chain(other),
    }
}
