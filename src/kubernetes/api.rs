//! Requests to the API server, the same way for every provider: transient
//! failures (5xx, 429, a dropped connection) of idempotent requests (GET,
//! server-side apply, DELETE) are tried again with backoff, anything else
//! is reported with the server's message; server-side apply always goes
//! under the provider's own field manager.

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, ObjectMeta, PatchParams};
use serde_json::Value as Json;

use super::connection::chain;

const ATTEMPTS: u32 = 5;

/// The field manager a provider applies every object under: the fields it
/// sent are the ones it owns (`metadata.managedFields`), and only those are
/// compared with the configuration, so fields the server or others fill in
/// never show as drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldManager(pub &'static str);

impl FieldManager {
    pub fn name(&self) -> &'static str {
        self.0
    }

    /// Server-side apply that takes over the fields it sends (`force`): the
    /// configuration is the authority over what it sets.
    pub fn apply(&self) -> PatchParams {
        PatchParams::apply(self.0).force()
    }

    /// Whether this manager has written the object (made it, or applied to it).
    pub fn manages(&self, meta: &ObjectMeta) -> bool {
        meta.managed_fields
            .iter()
            .flatten()
            .any(|m| m.manager.as_deref() == Some(self.0))
    }

    /// The keys under the top-level field `top` (such as `spec`) this
    /// manager owns, from `metadata.managedFields`.
    pub fn owned_keys(&self, meta: &ObjectMeta, top: &str) -> Vec<String> {
        let top = format!("f:{top}");
        meta.managed_fields
            .iter()
            .flatten()
            .filter(|m| m.manager.as_deref() == Some(self.0))
            .filter_map(|m| m.fields_v1.as_ref())
            .filter_map(|f| f.0.get(&top).and_then(Json::as_object))
            .flat_map(|fields| {
                fields
                    .keys()
                    .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
            })
            .collect()
    }
}

/// Errors worth another try of an idempotent request.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 429 || (status.code >= 500 && status.code != 501)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            // A refused connection or an untrusted certificate will not get better.
            let text = chain(error).to_lowercase();
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
                    chain(&e)
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

/// A text for the user from an API error, with the server's message and
/// the fields it names (`details.causes` of a 422 Invalid or a 409 Conflict).
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
        other => chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    fn meta(manager: &str, fields: Json) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                fields_v1: Some(FieldsV1(fields)),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn a_manager_owns_only_what_it_applied() {
        let ours = FieldManager("shardform-test");
        let m = meta("shardform-test", json!({"f:spec": {"f:size": {}, "f:numberOfReplicas": {}}}));
        assert!(ours.manages(&m));
        let mut keys = ours.owned_keys(&m, "spec");
        keys.sort();
        assert_eq!(keys, ["numberOfReplicas", "size"]);
        let theirs = meta("kubectl", json!({"f:spec": {"f:size": {}}}));
        assert!(!ours.manages(&theirs));
        assert!(ours.owned_keys(&theirs, "spec").is_empty());
        let params = ours.apply();
        assert_eq!(params.field_manager.as_deref(), Some("shardform-test"));
        assert!(params.force);
    }

    #[test]
    fn server_errors_are_retried_client_errors_are_not() {
        let status = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("m", "r").with_code(code).boxed(),
            )
        };
        assert!(is_transient(&status(503)));
        assert!(is_transient(&status(429)));
        assert!(!is_transient(&status(501)));
        assert!(!is_transient(&status(409)));
        assert!(is_not_found(&status(404)));
    }
}
