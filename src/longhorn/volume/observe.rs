//! Reading a live Volume (and the PV / PVC this resource made) into state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DynamicObject};
use serde_json::Value as Json;

use crate::cty::{Number, Value};
use crate::longhorn::api::FIELD_MANAGER;
use crate::longhorn::quantity;

use super::fields::SPEC_FIELDS;

/// What the live objects say, gathered before it is made into state.
pub struct Live {
    pub volume: DynamicObject,
    pub pv: Option<PersistentVolume>,
    pub pvc: Option<PersistentVolumeClaim>,
}

pub fn spec(volume: &DynamicObject) -> &Json {
    &volume.data["spec"]
}

pub fn status(volume: &DynamicObject) -> &Json {
    &volume.data["status"]
}

/// `spec.size` in bytes.
pub fn spec_size(volume: &DynamicObject) -> u64 {
    match &spec(volume)["size"] {
        Json::String(s) => s.parse().unwrap_or(0),
        Json::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// An expansion Longhorn has accepted but not finished.
pub fn expansion_pending(volume: &DynamicObject) -> bool {
    status(volume)["expansionRequired"]
        .as_bool()
        .unwrap_or(false)
}

/// Ready for use: detached and schedulable, or attached (restores finished).
pub fn is_ready(volume: &DynamicObject) -> bool {
    let status = status(volume);
    let state = status["state"].as_str().unwrap_or("");
    let scheduled_false = conditions(volume)
        .iter()
        .any(|(kind, s, _)| kind == "Scheduled" && s == "False");
    let restoring = status["restoreRequired"].as_bool().unwrap_or(false);
    volume.metadata.deletion_timestamp.is_none()
        && !restoring
        && (state == "attached" || (state == "detached" && !scheduled_false))
}

/// (type, status, message) of every condition.
pub fn conditions(volume: &DynamicObject) -> Vec<(String, String, String)> {
    status(volume)["conditions"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                    (s("type"), s("status"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The condition messages, for a report of why something did not finish.
pub fn condition_text(volume: &DynamicObject) -> String {
    let status = status(volume);
    let mut parts = vec![format!(
        "state {:?}, robustness {:?}",
        status["state"].as_str().unwrap_or(""),
        status["robustness"].as_str().unwrap_or("")
    )];
    for (kind, s, message) in conditions(volume) {
        if !message.is_empty() || s == "False" {
            parts.push(format!("condition {kind}={s}: {message}"));
        }
    }
    parts.join("; ")
}

/// Spec keys our field manager owns, from `metadata.managedFields`.
pub fn owned_spec_keys(meta: &kube::api::ObjectMeta) -> Vec<String> {
    FIELD_MANAGER.owned_keys(meta, "spec")
}

pub fn managed_by_us(meta: &kube::api::ObjectMeta) -> bool {
    FIELD_MANAGER.manages(meta)
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn text(json: &Json) -> Value {
    Value::string(json.as_str().unwrap_or(""))
}

/// The state for `live`, keeping from `prior` what only the configuration
/// knows (the size as written, deletion protection, timeouts).
pub fn state(live: &Live, prior: &Value) -> Value {
    let volume = &live.volume;
    let name = volume.metadata.name.clone().unwrap_or_default();
    let namespace = volume.metadata.namespace.clone().unwrap_or_default();
    let spec = spec(volume);
    let status = status(volume);
    let mut size_bytes = spec_size(volume);
    let prior_bytes = prior.attr("size_bytes").as_i64().map(|b| b as u64);
    if expansion_pending(volume) {
        // Not grown yet: the next apply waits for it.
        if let Some(p) = prior_bytes {
            size_bytes = size_bytes.min(p);
        }
    }
    let size = match prior
        .attr("size")
        .as_str()
        .and_then(|s| quantity::parse(s).ok())
    {
        Some(bytes) if quantity::rounded(bytes) == size_bytes => prior.attr("size").clone(),
        _ => Value::string(quantity::format(size_bytes)),
    };
    let applied = match prior.attr("applied_fields") {
        Value::List(items) => Value::List(items.clone()),
        _ => Value::List(
            SPEC_FIELDS
                .iter()
                .filter(|f| owned_spec_keys(&volume.metadata).iter().any(|k| k == f.key))
                .map(|f| Value::string(f.attr))
                .collect(),
        ),
    };
    let k8s = &status["kubernetesStatus"];
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    fields.insert("id".into(), Value::string(format!("{namespace}/{name}")));
    fields.insert("name".into(), Value::string(name));
    fields.insert("namespace".into(), Value::string(namespace));
    fields.insert("size".into(), size);
    for field in SPEC_FIELDS {
        fields.insert(field.attr.into(), field.from_json(spec.get(field.key)));
    }
    fields.insert(
        "deletion_protection".into(),
        Value::Bool(prior.attr("deletion_protection").as_bool().unwrap_or(true)),
    );
    fields.insert(
        "size_bytes".into(),
        Value::Number(Number::from(size_bytes as i64)),
    );
    fields.insert(
        "actual_size".into(),
        Value::Number(Number::from(status["actualSize"].as_i64().unwrap_or(0))),
    );
    fields.insert("state".into(), text(&status["state"]));
    fields.insert("robustness".into(), text(&status["robustness"]));
    fields.insert(
        "kubernetes_status".into(),
        object(vec![
            ("pv_name", text(&k8s["pvName"])),
            ("pv_status", text(&k8s["pvStatus"])),
            ("pvc_name", text(&k8s["pvcName"])),
            ("pvc_namespace", text(&k8s["namespace"])),
        ]),
    );
    fields.insert("applied_fields".into(), applied);
    fields.insert(
        "kubernetes_pv".into(),
        live.pv
            .as_ref()
            .map(|pv| {
                let spec = pv.spec.as_ref();
                object(vec![
                    ("name", Value::opt_string(pv.metadata.name.clone())),
                    (
                        "fs_type",
                        Value::string(
                            spec.and_then(|s| s.csi.as_ref())
                                .and_then(|c| c.fs_type.clone())
                                .unwrap_or_else(|| "ext4".into()),
                        ),
                    ),
                    (
                        "storage_class_name",
                        Value::opt_string(spec.and_then(|s| s.storage_class_name.clone())),
                    ),
                ])
            })
            .unwrap_or(Value::Null),
    );
    fields.insert(
        "kubernetes_pvc".into(),
        live.pvc
            .as_ref()
            .map(|pvc| {
                object(vec![
                    ("name", Value::opt_string(pvc.metadata.name.clone())),
                    (
                        "namespace",
                        Value::opt_string(pvc.metadata.namespace.clone()),
                    ),
                ])
            })
            .unwrap_or(Value::Null),
    );
    fields.insert("timeouts".into(), prior.attr("timeouts").clone());
    Value::Object(fields)
}

/// The spec value Longhorn holds for an attribute, as state would say it.
pub fn live_value(volume: &DynamicObject, attr: &str) -> Value {
    super::fields::by_attr(attr)
        .map(|f| f.from_json(spec(volume).get(f.key)))
        .unwrap_or(Value::Null)
}

/// The PV and PVC to read along with the volume: those the state names, or
/// on import those Longhorn reports that this provider made.
pub async fn binding(
    client: &kube::Client,
    volume: &DynamicObject,
    prior: &Value,
) -> Result<(Option<PersistentVolume>, Option<PersistentVolumeClaim>), kube::Error> {
    let k8s = &status(volume)["kubernetesStatus"];
    let importing = prior.attr("id").is_null();
    let pv_name = match prior.attr("kubernetes_pv").attr("name").as_str() {
        Some(n) => Some(n.to_string()),
        None if importing => k8s["pvName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        None => None,
    };
    let pvc_ref = match (
        prior.attr("kubernetes_pvc").attr("name").as_str(),
        prior.attr("kubernetes_pvc").attr("namespace").as_str(),
    ) {
        (Some(n), Some(ns)) => Some((n.to_string(), ns.to_string())),
        _ if importing => match (k8s["pvcName"].as_str(), k8s["namespace"].as_str()) {
            (Some(n), Some(ns)) if !n.is_empty() && !ns.is_empty() => {
                Some((n.to_string(), ns.to_string()))
            }
            _ => None,
        },
        _ => None,
    };
    let pv = match pv_name {
        Some(name) => {
            let api: Api<PersistentVolume> = Api::all(client.clone());
            crate::longhorn::api::get_opt(&api, &name, "read the PersistentVolume")
                .await?
                .filter(|pv| !importing || managed_by_us(&pv.metadata))
        }
        None => None,
    };
    let pvc = match pvc_ref {
        Some((name, namespace)) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
            crate::longhorn::api::get_opt(&api, &name, "read the PersistentVolumeClaim")
                .await?
                .filter(|pvc| !importing || managed_by_us(&pvc.metadata))
        }
        None => None,
    };
    Ok((pv, pvc))
}
