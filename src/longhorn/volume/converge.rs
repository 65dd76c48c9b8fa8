//! Making the live objects what the plan says: server-side apply of the
//! Volume (only the fields the configuration sets), growth through the PVC
//! when one is bound, the PV and PVC, waits, and deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value as Json};

use crate::cty::Value;
use crate::framework::{poll_until, Context, WaitError};
use crate::longhorn::api::{self, explain, get_opt, retrying, CSI_DRIVER, FIELD_MANAGER};
use crate::longhorn::quantity;

use super::fields::{by_attr, SpecField};
use super::observe::{self, condition_text, expansion_pending, spec_size};

const POLL: Duration = Duration::from_millis(500);

pub struct PvTarget {
    pub name: String,
    pub fs_type: String,
    pub storage_class: String,
}

pub struct PvcTarget {
    pub name: String,
    pub namespace: String,
}

/// What a planned value asks of the cluster.
pub struct Target {
    pub name: String,
    pub namespace: String,
    pub size_bytes: u64,
    pub applied: Vec<(&'static SpecField, Value)>,
    pub pv: Option<PvTarget>,
    pub pvc: Option<PvcTarget>,
}

impl Target {
    pub fn from_planned(planned: &Value) -> Result<Target, String> {
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{what} is not known"))
        };
        let size = text(planned.attr("size"), "size")?;
        let size_bytes = quantity::rounded(quantity::parse(&size)?);
        let applied = planned
            .attr("applied_fields")
            .as_elements()
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.as_str().and_then(by_attr))
            .map(|f| (f, planned.attr(f.attr).clone()))
            .filter(|(_, v)| !v.is_null())
            .collect();
        let pv_block = planned.attr("kubernetes_pv");
        let pv = if pv_block.is_null() {
            None
        } else {
            Some(PvTarget {
                name: text(pv_block.attr("name"), "kubernetes_pv.name")?,
                fs_type: pv_block
                    .attr("fs_type")
                    .as_str()
                    .unwrap_or("ext4")
                    .to_string(),
                storage_class: pv_block
                    .attr("storage_class_name")
                    .as_str()
                    .unwrap_or("longhorn-static")
                    .to_string(),
            })
        };
        let pvc_block = planned.attr("kubernetes_pvc");
        let pvc = if pvc_block.is_null() {
            None
        } else {
            Some(PvcTarget {
                name: text(pvc_block.attr("name"), "kubernetes_pvc.name")?,
                namespace: text(pvc_block.attr("namespace"), "kubernetes_pvc.namespace")?,
            })
        };
        Ok(Target {
            name: text(planned.attr("name"), "name")?,
            namespace: text(planned.attr("namespace"), "namespace")?,
            size_bytes,
            applied,
            pv,
            pvc,
        })
    }

    /// The whole intent of this provider's field manager for the Volume:
    /// identity, the size, and the fields the configuration sets. Nothing else.
    pub fn volume_body(&self, size_bytes: u64) -> Json {
        let mut spec = serde_json::Map::new();
        spec.insert("size".into(), json!(size_bytes.to_string()));
        for (field, value) in &self.applied {
            spec.insert(field.key.into(), field.to_json(value));
        }
        json!({
            "apiVersion": "longhorn.io/v1beta2",
            "kind": "Volume",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": spec,
        })
    }

    /// True when the live Volume differs from this target in a field we set.
    pub fn differs_from(&self, volume: &DynamicObject, prior_applied: &Value) -> bool {
        let applied_now: Vec<&str> = self.applied.iter().map(|(f, _)| f.attr).collect();
        let prior: Vec<&str> = prior_applied
            .as_elements()
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        applied_now != prior
            || self
                .applied
                .iter()
                .any(|(f, v)| observe::live_value(volume, f.attr) != *v)
    }
}

/// Server-side apply of the Volume. Forced: the fields in the body are the
/// configuration's, and taking them back from another manager is how apply
/// repairs drift; fields this provider does not send are never touched.
pub async fn apply_volume(
    client: &Client,
    target: &Target,
    size_bytes: u64,
) -> Result<DynamicObject, String> {
    let volumes = api::volumes(client, &target.namespace);
    let body = target.volume_body(size_bytes);
    let params = FIELD_MANAGER.apply();
    log::info!(
        "applying Volume {}/{} ({} fields)",
        target.namespace,
        target.name,
        body["spec"].as_object().map_or(0, |m| m.len())
    );
    let patch = Patch::Apply(&body);
    retrying("apply the Volume", || {
        volumes.patch(&target.name, &params, &patch)
    })
    .await
    .map_err(|e| {
        format!(
            "Longhorn refused Volume {}/{}: {}",
            target.namespace,
            target.name,
            explain(&e)
        )
    })
}

async fn get_volume(
    volumes: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<DynamicObject>, String> {
    get_opt(volumes, name, "read the Volume")
        .await
        .map_err(|e| explain(&e))
}

fn wait_error(error: WaitError<String>, what: &str, last: Option<&DynamicObject>) -> String {
    let context = last.map(condition_text).unwrap_or_default();
    match error {
        WaitError::Stopped => format!(
            "Interrupted while waiting for {what}; the work goes on in the cluster and the next apply picks it up. Last seen: {context}"
        ),
        WaitError::TimedOut(after) => format!(
            "{what} did not happen within {}s (raise the timeouts block to wait longer). The volume says: {context}",
            after.as_secs()
        ),
        WaitError::Failed(e) => format!("While waiting for {what}: {e}"),
    }
}

/// Waits until Longhorn has made the volume usable.
pub async fn wait_ready(
    ctx: &Context,
    volumes: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
) -> Result<DynamicObject, String> {
    let mut last: Option<DynamicObject> = None;
    let mut last_state = String::new();
    let what = format!("volume {name} to be ready (detached and schedulable, or attached)");
    let mut logged = std::time::Instant::now();
    let started = std::time::Instant::now();
    loop {
        let volume = get_volume(volumes, name).await?;
        if let Some(v) = &volume {
            let state = observe::status(v)["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if state != last_state {
                log::info!("volume {name}: state {state:?}");
                last_state = state;
            }
            if observe::is_ready(v) {
                return Ok(v.clone());
            }
        }
        last = volume.or(last);
        if ctx.stop.is_stopped() {
            return Err(wait_error(WaitError::Stopped, &what, last.as_ref()));
        }
        if started.elapsed() >= timeout {
            return Err(wait_error(
                WaitError::TimedOut(timeout),
                &what,
                last.as_ref(),
            ));
        }
        if logged.elapsed() >= Duration::from_secs(10) {
            log::info!(
                "still waiting for {what} ({}s)",
                started.elapsed().as_secs()
            );
            logged = std::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.stop.stopped() => {}
        }
    }
}

/// Waits until the volume has grown to `bytes`: `spec.size` there, no
/// expansion pending, and Longhorn has processed the object since our write
/// (its resourceVersion moved past `written`), so an expansion it has not
/// even noticed yet is not taken for a finished one. Through a PVC, the
/// resizer's last step (the PV's capacity) marks the end.
pub async fn wait_grown(
    ctx: &Context,
    client: &Client,
    volumes: &Api<DynamicObject>,
    name: &str,
    bytes: u64,
    timeout: Duration,
    written: Option<String>,
    through_pv: bool,
) -> Result<DynamicObject, String> {
    let what = format!(
        "the expansion of volume {name} to {}",
        quantity::format(bytes)
    );
    let started = std::time::Instant::now();
    let mut last: Option<DynamicObject> = None;
    let mut logged = std::time::Instant::now();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    loop {
        if let Some(v) = get_volume(volumes, name).await? {
            let processed = written.is_none() || v.metadata.resource_version != written;
            let mut done = spec_size(&v) >= bytes && !expansion_pending(&v) && processed;
            if done && through_pv {
                let pv_name = observe::status(&v)["kubernetesStatus"]["pvName"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let capacity = if pv_name.is_empty() {
                    None
                } else {
                    get_opt(&pvs, &pv_name, "read the PersistentVolume")
                        .await
                        .map_err(|e| explain(&e))?
                        .and_then(|pv| pv.spec)
                        .and_then(|s| s.capacity)
                        .and_then(|c| c.get("storage").and_then(|q| quantity::parse_api(&q.0)))
                };
                done = capacity.is_some_and(|c| quantity::rounded(c) >= bytes);
            }
            if done {
                log::info!("volume {name} grew to {}", quantity::format(bytes));
                return Ok(v);
            }
            last = Some(v);
        }
        if ctx.stop.is_stopped() {
            return Err(wait_error(WaitError::Stopped, &what, last.as_ref()));
        }
        if started.elapsed() >= timeout {
            return Err(wait_error(
                WaitError::TimedOut(timeout),
                &what,
                last.as_ref(),
            ));
        }
        if logged.elapsed() >= Duration::from_secs(10) {
            log::info!(
                "still waiting for {what} ({}s)",
                started.elapsed().as_secs()
            );
            logged = std::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.stop.stopped() => {}
        }
    }
}

/// The PVC Longhorn reports bound to the volume, when it is bound.
pub async fn bound_pvc(
    client: &Client,
    volume: &DynamicObject,
) -> Result<Option<PersistentVolumeClaim>, String> {
    let k8s = &observe::status(volume)["kubernetesStatus"];
    let (Some(name), Some(namespace)) = (
        k8s["pvcName"].as_str().filter(|s| !s.is_empty()),
        k8s["namespace"].as_str().filter(|s| !s.is_empty()),
    ) else {
        return Ok(None);
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = get_opt(&pvcs, name, "read the PersistentVolumeClaim")
        .await
        .map_err(|e| explain(&e))?;
    Ok(pvc.filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")))
}

fn access_mode(volume: &DynamicObject) -> &'static str {
    match observe::spec(volume)["accessMode"].as_str() {
        Some("rwx") => "ReadWriteMany",
        Some("rwop") => "ReadWriteOncePod",
        _ => "ReadWriteOnce",
    }
}

fn pvc_body(pvc: &PvcTarget, pv: &PvTarget, volume: &DynamicObject, bytes: u64) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": pvc.name, "namespace": pvc.namespace },
        "spec": {
            "accessModes": [access_mode(volume)],
            "resources": { "requests": { "storage": quantity::format(bytes) } },
            "storageClassName": pv.storage_class,
            "volumeMode": "Filesystem",
            "volumeName": pv.name,
        },
    })
}

/// Grows the volume through its bound PVC (Longhorn refuses a Volume-side
/// grow then): the CSI resizer grows the Volume.
pub async fn grow_through_pvc(
    client: &Client,
    target: &Target,
    volume: &DynamicObject,
    pvc: &PersistentVolumeClaim,
    bytes: u64,
) -> Result<(), String> {
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let ours = matches!((&target.pvc, &target.pv), (Some(c), Some(_)) if c.name == name && c.namespace == namespace);
    log::info!(
        "growing volume {} to {} through PVC {namespace}/{name}",
        target.name,
        quantity::format(bytes)
    );
    let result = if ours {
        let body = pvc_body(
            target.pvc.as_ref().unwrap(),
            target.pv.as_ref().unwrap(),
            volume,
            bytes,
        );
        let params = FIELD_MANAGER.apply();
        let patch = Patch::Apply(&body);
        retrying("grow the PVC", || pvcs.patch(&name, &params, &patch)).await
    } else {
        let body = json!({ "spec": { "resources": { "requests": { "storage": quantity::format(bytes) } } } });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        retrying("grow the PVC", || pvcs.patch(&name, &params, &patch)).await
    };
    result
        .map(|_| ())
        .map_err(|e| format!("Cannot grow PVC {namespace}/{name}: {}", explain(&e)))
}

/// Makes the PV and PVC the plan asks for, and waits until the PVC is bound.
pub async fn ensure_binding(
    ctx: &Context,
    client: &Client,
    target: &Target,
    volume: &DynamicObject,
    timeout: Duration,
) -> Result<(), String> {
    let Some(pv) = &target.pv else { return Ok(()) };
    let bytes = spec_size(volume);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let params = FIELD_MANAGER.apply();
    if get_opt(&pvs, &pv.name, "read the PersistentVolume")
        .await
        .map_err(|e| explain(&e))?
        .is_none()
    {
        let numbers = |key: &str| {
            observe::spec(volume)[key]
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let body = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": { "name": pv.name },
            "spec": {
                "capacity": { "storage": quantity::format(bytes) },
                "volumeMode": "Filesystem",
                "accessModes": [access_mode(volume)],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": pv.storage_class,
                "csi": {
                    "driver": CSI_DRIVER,
                    "volumeHandle": target.name,
                    "fsType": pv.fs_type,
                    "volumeAttributes": {
                        "numberOfReplicas": numbers("numberOfReplicas"),
                        "staleReplicaTimeout": numbers("staleReplicaTimeout"),
                    },
                },
            },
        });
        log::info!("creating PersistentVolume {}", pv.name);
        let patch = Patch::Apply(&body);
        retrying("create the PV", || pvs.patch(&pv.name, &params, &patch))
            .await
            .map_err(|e| {
                format!(
                    "Cannot create PersistentVolume {}: {}",
                    pv.name,
                    explain(&e)
                )
            })?;
    }
    let Some(pvc) = &target.pvc else {
        return Ok(());
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pvc.namespace);
    if get_opt(&pvcs, &pvc.name, "read the PVC")
        .await
        .map_err(|e| explain(&e))?
        .is_none()
    {
        let body = pvc_body(pvc, pv, volume, bytes);
        log::info!(
            "creating PersistentVolumeClaim {}/{}",
            pvc.namespace,
            pvc.name
        );
        let patch = Patch::Apply(&body);
        retrying("create the PVC", || pvcs.patch(&pvc.name, &params, &patch))
            .await
            .map_err(|e| {
                format!(
                    "Cannot create PersistentVolumeClaim {}/{}: {}",
                    pvc.namespace,
                    pvc.name,
                    explain(&e)
                )
            })?;
    }
    let what = format!(
        "PVC {}/{} to be bound to PV {}",
        pvc.namespace, pvc.name, pv.name
    );
    poll_until(&ctx.stop, timeout, POLL, &what, || {
        let pvcs = pvcs.clone();
        async move {
            let pvc = get_opt(&pvcs, &pvc.name, "read the PVC")
                .await
                .map_err(|e| explain(&e))?;
            Ok(pvc.filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")))
        }
    })
    .await
    .map(|_| ())
    .map_err(|e| wait_error(e, &what, Some(volume)))
}

/// Deletes an object and waits until it is gone (finalizers done).
async fn delete_and_wait<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
) -> Result<(), String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    log::info!("deleting {what}");
    let params = DeleteParams::default();
    match retrying(what, || api.delete(name, &params)).await {
        Ok(_) => {}
        Err(e) if api::is_not_found(&e) => return Ok(()),
        Err(e) => return Err(format!("Cannot delete {what}: {}", explain(&e))),
    }
    let waiting = format!("{what} to be gone");
    poll_until(&ctx.stop, timeout, POLL, &waiting, || async {
        match get_opt(api, name, what).await {
            Ok(None) => Ok(Some(())),
            Ok(Some(_)) => Ok(None),
            Err(e) => Err(explain(&e)),
        }
    })
    .await
    .map_err(|e| match e {
        WaitError::Stopped => {
            format!("Interrupted while waiting for {waiting}; the deletion goes on in the cluster.")
        }
        WaitError::TimedOut(after) => format!(
            "{waiting} took longer than {}s (a finalizer still holds it).",
            after.as_secs()
        ),
        WaitError::Failed(e) => format!("While waiting for {waiting}: {e}"),
    })
}

/// Deletes the PVC and the PV this resource made (PVC first).
pub async fn remove_binding(
    ctx: &Context,
    client: &Client,
    pv: Option<&str>,
    pvc: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some((name, namespace)) = pvc {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        delete_and_wait(
            ctx,
            &pvcs,
            name,
            &format!("PersistentVolumeClaim {namespace}/{name}"),
            timeout,
        )
        .await?;
    }
    if let Some(name) = pv {
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        delete_and_wait(
            ctx,
            &pvs,
            name,
            &format!("PersistentVolume {name}"),
            timeout,
        )
        .await?;
    }
    Ok(())
}

/// Deletes the Volume and waits for Longhorn's finalizer to let it go.
pub async fn delete_volume(
    ctx: &Context,
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let volumes = api::volumes(client, namespace);
    delete_and_wait(
        ctx,
        &volumes,
        name,
        &format!("Volume {namespace}/{name}"),
        timeout,
    )
    .await
}
