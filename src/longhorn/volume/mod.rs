//! `longhorn_volume`: a Longhorn volume through the Kubernetes API.
//!
//! - [`schema`]: attributes, validators; [`fields`]: the spec fields exposed;
//! - [`observe`]: live objects -> state; [`converge`]: plan -> live objects;
//! - here: planning rules (sizes compared after rounding, no shrink, what the
//!   provider applies, protection) and the Resource operations.

mod converge;
mod fields;
mod observe;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::Client;

use crate::cty::{Number, Value};
use crate::framework::{timeouts, AttrPath, Context, Diagnostics, PlannedChange, Resource, Schema};

use super::api::{self, explain, get_opt};
use super::connection::{self, crd_missing, Connection};
use super::quantity;
use converge::Target;
use fields::SPEC_FIELDS;
use observe::Live;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

pub struct VolumeResource {
    connection: Arc<Connection>,
}

impl VolumeResource {
    pub fn new(connection: Arc<Connection>) -> Self {
        VolumeResource { connection }
    }

    async fn client(&self, diags: &mut Diagnostics) -> Option<Client> {
        match self.connection.client().await {
            Ok(c) => Some(c),
            Err(e) => {
                e.report(diags);
                None
            }
        }
    }

    /// The live objects of a state (or planned) value; `None` when the Volume is gone.
    async fn observe(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        prior: &Value,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let volumes = api::volumes(client, namespace);
        let volume = match get_opt(&volumes, name, "read the Volume").await {
            Ok(Some(v)) => v,
            Ok(None) => return None,
            Err(e) if api::is_not_found(&e) => {
                crd_missing(&self.connection.url()).report(diags);
                return None;
            }
            Err(e) => {
                diags.error(
                    format!("Cannot read Volume {namespace}/{name}"),
                    explain(&e),
                );
                return None;
            }
        };
        if volume.metadata.deletion_timestamp.is_some() {
            log::info!("Volume {namespace}/{name} is being deleted: reported as gone");
            return None;
        }
        match observe::binding(client, &volume, prior).await {
            Ok((pv, pvc)) => Some(observe::state(&Live { volume, pv, pvc }, prior)),
            Err(e) => {
                diags.error(
                    format!("Cannot read the PV / PVC of Volume {namespace}/{name}"),
                    explain(&e),
                );
                None
            }
        }
    }

    /// Applies `planned`: the Volume, growth, the PV and PVC; returns the
    /// state read afterwards, or the error with what was read.
    async fn converge(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        operation: &str,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let target = match Target::from_planned(planned) {
            Ok(t) => t,
            Err(e) => {
                diags.error("Invalid planned volume", e);
                return None;
            }
        };
        let client = self.client(diags).await?;
        let timeout = timeouts::get(planned, operation, DEFAULT_TIMEOUT);
        let volumes = api::volumes(&client, &target.namespace);
        let live = match get_opt(&volumes, &target.name, "read the Volume").await {
            Ok(v) => v,
            Err(e) => {
                diags.error(
                    format!("Cannot read Volume {}/{}", target.namespace, target.name),
                    explain(&e),
                );
                return None;
            }
        };
        let outcome = async {
            // A Volume still being deleted (by someone else) is let go first.
            let live = match live {
                Some(v) if v.metadata.deletion_timestamp.is_some() => {
                    log::info!("Volume {}/{} is being deleted; waiting for it to go before making it again", target.namespace, target.name);
                    converge::delete_volume(ctx, &client, &target.namespace, &target.name, timeout).await?;
                    None
                }
                other => other,
            };
            let mut volume = match &live {
                Some(current) if spec_size_of(current) < target.size_bytes => {
                    match converge::bound_pvc(&client, current).await? {
                        Some(pvc) => {
                            converge::grow_through_pvc(
                                &client,
                                &target,
                                current,
                                &pvc,
                                target.size_bytes,
                            )
                            .await?;
                            let grown = converge::wait_grown(
                                ctx,
                                &client,
                                &volumes,
                                &target.name,
                                target.size_bytes,
                                timeout,
                                None,
                                true,
                            )
                            .await?;
                            if target.differs_from(&grown, prior.attr("applied_fields")) {
                                converge::apply_volume(&client, &target, target.size_bytes).await?
                            } else {
                                grown
                            }
                        }
                        None => {
                            let written =
                                converge::apply_volume(&client, &target, target.size_bytes).await?;
                            let version = written.metadata.resource_version.clone();
                            converge::wait_grown(
                                ctx,
                                &client,
                                &volumes,
                                &target.name,
                                target.size_bytes,
                                timeout,
                                version,
                                false,
                            )
                            .await?
                        }
                    }
                }
                Some(current) => {
                    // Never sends a smaller size than Longhorn holds (say, after a
                    // grow through the PVC by someone else).
                    let bytes = target.size_bytes.max(spec_size_of(current));
                    let written = converge::apply_volume(&client, &target, bytes).await?;
                    if observe::expansion_pending(&written) {
                        // An expansion an interrupted apply started: wait for it.
                        converge::wait_grown(
                            ctx,
                            &client,
                            &volumes,
                            &target.name,
                            bytes,
                            timeout,
                            None,
                            false,
                        )
                        .await?
                    } else {
                        written
                    }
                }
                None => converge::apply_volume(&client, &target, target.size_bytes).await?,
            };
            if !observe::is_ready(&volume) {
                volume = converge::wait_ready(ctx, &volumes, &target.name, timeout).await?;
            }
            // A PV / PVC the plan drops goes first; then what it adds.
            let pv_gone = !prior.attr("kubernetes_pv").is_null() && target.pv.is_none();
            let pvc_gone = !prior.attr("kubernetes_pvc").is_null() && target.pvc.is_none();
            if pv_gone || pvc_gone {
                let pvc = prior.attr("kubernetes_pvc");
                converge::remove_binding(
                    ctx,
                    &client,
                    if pv_gone {
                        prior.attr("kubernetes_pv").attr("name").as_str()
                    } else {
                        None
                    },
                    pvc.attr("name")
                        .as_str()
                        .zip(pvc.attr("namespace").as_str())
                        .filter(|_| pvc_gone),
                    timeout,
                )
                .await?;
            }
            converge::ensure_binding(ctx, &client, &target, &volume, timeout).await?;
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = outcome {
            diags.error(
                format!("Volume {}/{} not converged", target.namespace, target.name),
                e,
            );
        }
        let mut state_basis = planned.clone();
        if let Some(fields) = state_basis.as_object_mut() {
            // What the state knew before, for the size as written.
            if diags.has_errors() {
                fields.insert("size".into(), prior.attr("size").clone());
                fields.insert("size_bytes".into(), prior.attr("size_bytes").clone());
            }
            fields.insert(
                "id".into(),
                Value::string(format!("{}/{}", target.namespace, target.name)),
            );
        }
        self.observe(
            &client,
            &target.namespace,
            &target.name,
            &state_basis,
            diags,
        )
        .await
    }
}

fn spec_size_of(volume: &kube::api::DynamicObject) -> u64 {
    observe::spec_size(volume)
}

/// The value at an attribute path of nested single blocks.
fn value_at<'a>(value: &'a Value, path: &AttrPath) -> &'a Value {
    path.0.iter().fold(value, |v, step| match step {
        crate::framework::PathStep::Attribute(name) => v.attr(name),
        _ => &Value::Null,
    })
}

fn set(change: &mut PlannedChange, name: &str, value: Value) {
    if let Some(fields) = change.planned.as_object_mut() {
        fields.insert(name.to_string(), value);
    }
}

fn set_nested(change: &mut PlannedChange, block: &str, name: &str, value: Value) {
    if let Some(Value::Object(fields)) = change
        .planned
        .as_object_mut()
        .and_then(|f| f.get_mut(block))
    {
        fields.insert(name.to_string(), value);
    }
}

/// The attributes the configuration sets (unknown counts: it will be set),
/// plus immutable ones applied before, which stay owned.
fn applied_fields(config: &Value, prior: &Value) -> Vec<&'static str> {
    let before: Vec<&str> = prior
        .attr("applied_fields")
        .as_elements()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    SPEC_FIELDS
        .iter()
        .filter(|f| !config.attr(f.attr).is_null() || (f.replace && before.contains(&f.attr)))
        .map(|f| f.attr)
        .collect()
}

#[async_trait]
impl Resource for VolumeResource {
    fn type_name(&self) -> &'static str {
        "longhorn_volume"
    }

    fn schema(&self) -> Schema {
        schema::schema()
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        let replicas = config.attr("number_of_replicas");
        if config.attr("data_locality").as_str() == Some("strict-local") {
            match replicas {
                Value::Unknown => {}
                Value::Null => diags.error_at(
                    AttrPath::root("data_locality"),
                    "strict-local needs one replica",
                    "data_locality = \"strict-local\" keeps the only replica on the volume's node: set number_of_replicas = 1 (Longhorn's default is 3).",
                ),
                v if v.as_i64() != Some(1) => diags.error_at(
                    AttrPath::root("number_of_replicas"),
                    "strict-local needs one replica",
                    format!(
                        "number_of_replicas is {}, but data_locality = \"strict-local\" allows exactly 1.",
                        v.as_i64().map(|n| n.to_string()).unwrap_or_else(|| "not a whole number".into())
                    ),
                ),
                _ => {}
            }
        }
        if config.attr("migratable").as_bool() == Some(true) {
            let mode = config.attr("access_mode");
            if !mode.is_unknown() && mode.as_str() != Some("rwx") {
                diags.error_at(
                    AttrPath::root("migratable"),
                    "migratable needs rwx",
                    "Longhorn migrates only volumes with access_mode = \"rwx\".",
                );
            }
        }
        if !config.attr("from_backup").is_null() && !config.attr("data_source").is_null() {
            diags.error_at(
                AttrPath::root("data_source"),
                "Two sources",
                "Set from_backup or data_source, not both.",
            );
        }
        if !config.attr("kubernetes_pvc").is_null() && config.attr("kubernetes_pv").is_null() {
            diags.error_at(
                AttrPath::root("kubernetes_pvc"),
                "A PVC needs the PV",
                "kubernetes_pvc binds to the PersistentVolume of a kubernetes_pv block: add one.",
            );
        }
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        change: &mut PlannedChange,
        diags: &mut Diagnostics,
    ) {
        let protected = change
            .prior
            .attr("deletion_protection")
            .as_bool()
            .unwrap_or(false);
        if change.is_delete() {
            if protected {
                diags.error(
                    "Volume protected from deletion",
                    format!(
                        "longhorn_volume {} has deletion_protection = true. Set it to false and apply, then destroy.",
                        change.prior.attr("id").as_str().unwrap_or_default()
                    ),
                );
            }
            return;
        }
        // Namespace and id.
        if change.config.attr("namespace").is_null() {
            let namespace = match change.prior.attr("namespace") {
                Value::String(s) => Value::string(s.clone()),
                _ => connection::namespace(&self.connection)
                    .map(Value::string)
                    .unwrap_or(Value::Unknown),
            };
            set(change, "namespace", namespace);
        }
        if let (Some(ns), Some(name)) = (
            change.planned.attr("namespace").as_str(),
            change.planned.attr("name").as_str(),
        ) {
            let id = Value::string(format!("{ns}/{name}"));
            set(change, "id", id);
        }
        // A block the configuration drops is planned gone (Terraform's proposal
        // may carry the prior one).
        for block in ["kubernetes_pv", "kubernetes_pvc"] {
            if change.config.attr(block).is_null() && !change.planned.attr(block).is_null() {
                set(change, block, Value::Null);
                // Dropping the binding changes what Longhorn reports.
                for computed in ["kubernetes_status", "state", "robustness", "actual_size"] {
                    set(change, computed, Value::Unknown);
                }
            }
        }
        // The PV is named after the volume, the PVC after the PV, unless set.
        if !change.planned.attr("kubernetes_pv").is_null()
            && change.config.attr("kubernetes_pv").attr("name").is_null()
        {
            let name = change.prior.attr("kubernetes_pv").attr("name").clone();
            let name = if name.is_null() {
                change.planned.attr("name").clone()
            } else {
                name
            };
            set_nested(change, "kubernetes_pv", "name", name);
        }
        if !change.planned.attr("kubernetes_pvc").is_null()
            && change.config.attr("kubernetes_pvc").attr("name").is_null()
        {
            let name = change.prior.attr("kubernetes_pvc").attr("name").clone();
            let name = if name.is_null() {
                change.planned.attr("kubernetes_pv").attr("name").clone()
            } else {
                name
            };
            set_nested(change, "kubernetes_pvc", "name", name);
        }
        // What the provider will apply; fields it stops applying are Longhorn's again.
        let applied = applied_fields(&change.config, &change.prior);
        for field in SPEC_FIELDS {
            let was = change
                .prior
                .attr("applied_fields")
                .as_elements()
                .unwrap_or_default()
                .iter()
                .any(|a| a.as_str() == Some(field.attr));
            if was && !applied.contains(&field.attr) && field.computed {
                set(change, field.attr, Value::Unknown);
            }
        }
        set(
            change,
            "applied_fields",
            Value::List(applied.iter().map(|a| Value::string(*a)).collect()),
        );
        // Fields the provider does not send keep what Longhorn holds: the
        // framework's "unknown on change" would otherwise plan replacements
        // for immutable ones no one touched.
        if !change.is_create() {
            for field in SPEC_FIELDS {
                let released = field.computed
                    && !applied.contains(&field.attr)
                    && change
                        .prior
                        .attr("applied_fields")
                        .as_elements()
                        .unwrap_or_default()
                        .iter()
                        .any(|a| a.as_str() == Some(field.attr));
                if change.config.attr(field.attr).is_null()
                    && !released
                    && !change.prior.attr(field.attr).is_null()
                {
                    let prior = change.prior.attr(field.attr).clone();
                    set(change, field.attr, prior);
                }
            }
            let prior_namespace = change.prior.attr("namespace").clone();
            if change.config.attr("namespace").is_null() && !prior_namespace.is_null() {
                set(change, "namespace", prior_namespace);
            }
        }
        // Sizes compared after Longhorn's rounding; never a shrink.
        if let Some(bytes) = change
            .planned
            .attr("size")
            .as_str()
            .and_then(|s| quantity::parse(s).ok())
        {
            let bytes = quantity::rounded(bytes);
            match change.prior.attr("size_bytes").as_i64().map(|b| b as u64) {
                Some(current) if bytes < current => diags.error_at(
                    AttrPath::root("size"),
                    "Longhorn volumes cannot shrink",
                    format!(
                        "size {:?} ({}) is smaller than the volume's current {} ({current} bytes). Longhorn only grows volumes: keep the size, or make a new volume and copy the data.",
                        change.planned.attr("size").as_str().unwrap_or_default(),
                        quantity::format(bytes),
                        quantity::format(current)
                    ),
                ),
                Some(current) if bytes == current => set(change, "size_bytes", Value::Number(Number::from(current as i64))),
                _ => set(change, "size_bytes", Value::Number(Number::from(bytes as i64))),
            }
        }
        // Only paths that really change, now that the plan is refined.
        let (prior, planned) = (&change.prior, &change.planned);
        change
            .requires_replace
            .retain(|path| value_at(prior, path) != value_at(planned, path));
        if !change.requires_replace.is_empty() && protected {
            let paths: Vec<String> = change
                .requires_replace
                .iter()
                .map(|p| p.to_string())
                .collect();
            diags.error_at(
                change.requires_replace[0].clone(),
                "Replacing a protected volume",
                format!(
                    "Changing {} replaces the volume (its data is lost), but deletion_protection is true. Set deletion_protection = false and apply first, or undo the change.",
                    paths.join(", ")
                ),
            );
        }
        // What only the cluster can tell, when it can be reached already.
        if change.is_create() && self.connection.is_known() {
            let (Some(namespace), Some(name)) = (
                change
                    .planned
                    .attr("namespace")
                    .as_str()
                    .map(str::to_string),
                change.planned.attr("name").as_str().map(str::to_string),
            ) else {
                return;
            };
            let Some(client) = self.client(diags).await else {
                return;
            };
            match get_opt(&api::volumes(&client, &namespace), &name, "read the Volume").await {
                Ok(Some(existing)) if !observe::managed_by_us(&existing.metadata) => diags.error_at(
                    AttrPath::root("name"),
                    "Volume already exists",
                    format!(
                        "Volume {namespace}/{name} exists and was not made by this provider. Import it (terraform import ADDRESS {namespace}/{name}) or choose another name."
                    ),
                ),
                // Left by an interrupted apply: the apply adopts it.
                Ok(_) => {}
                Err(e) => diags.error(format!("Cannot look up Volume {namespace}/{name}"), explain(&e)),
            }
        }
    }

    async fn create(&self, ctx: &Context, planned: &Value, diags: &mut Diagnostics) -> Value {
        let state = self
            .converge(ctx, &Value::Null, planned, "create", diags)
            .await;
        if diags.has_errors() {
            // The objects stay in the cluster, owned by this provider's field
            // manager: the next apply adopts and finishes them.
            return Value::Null;
        }
        state.unwrap_or(Value::Null)
    }

    async fn read(&self, _ctx: &Context, state: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let (Some(namespace), Some(name)) = (
            state.attr("namespace").as_str(),
            state.attr("name").as_str(),
        ) else {
            return None;
        };
        let client = self.client(diags).await?;
        self.observe(&client, namespace, name, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        match self.converge(ctx, prior, planned, "update", diags).await {
            Some(state) => state,
            None if diags.has_errors() => prior.clone(),
            None => Value::Null,
        }
    }

    async fn delete(&self, ctx: &Context, prior: &Value, diags: &mut Diagnostics) {
        let id = prior.attr("id").as_str().unwrap_or_default().to_string();
        if prior.attr("deletion_protection").as_bool().unwrap_or(true) {
            diags.error(
                "Volume protected from deletion",
                format!("longhorn_volume {id} has deletion_protection = true. Set it to false and apply, then destroy."),
            );
            return;
        }
        let (Some(namespace), Some(name)) = (
            prior.attr("namespace").as_str(),
            prior.attr("name").as_str(),
        ) else {
            return;
        };
        let Some(client) = self.client(diags).await else {
            return;
        };
        let timeout = timeouts::get(prior, "delete", DEFAULT_TIMEOUT);
        let pvc = prior.attr("kubernetes_pvc");
        let result = async {
            converge::remove_binding(
                ctx,
                &client,
                prior.attr("kubernetes_pv").attr("name").as_str(),
                pvc.attr("name")
                    .as_str()
                    .zip(pvc.attr("namespace").as_str()),
                timeout,
            )
            .await?;
            converge::delete_volume(ctx, &client, namespace, name, timeout).await
        }
        .await;
        if let Err(e) = result {
            diags.error(format!("Cannot destroy Volume {id}"), e);
        }
    }

    async fn import(&self, _ctx: &Context, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let (namespace, name) = match id.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => match connection::namespace(&self.connection) {
                Some(ns) => (ns, id.to_string()),
                None => {
                    diags.error(
                        "Provider namespace unknown",
                        "Import by NAMESPACE/NAME while the provider's namespace is unknown.",
                    );
                    return None;
                }
            },
        };
        if let Some(problem) = schema::name_error(&name) {
            diags.error(
                "Invalid import ID",
                format!("Expected NAME or NAMESPACE/NAME of a Longhorn volume: {problem}"),
            );
            return None;
        }
        let client = self.client(diags).await?;
        let state = self
            .observe(&client, &namespace, &name, &Value::Null, diags)
            .await;
        if state.is_none() && !diags.has_errors() {
            diags.error(
                "Nothing to import",
                format!("There is no Longhorn Volume {namespace}/{name}."),
            );
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::plan_resource_change;

    fn object(pairs: &[(&str, Value)]) -> Value {
        let schema = schema::schema();
        let mut fields: std::collections::BTreeMap<String, Value> = schema
            .block
            .attributes
            .iter()
            .map(|a| (a.name.to_string(), Value::Null))
            .chain(
                schema
                    .block
                    .blocks
                    .iter()
                    .map(|b| (b.name.to_string(), b.empty_value())),
            )
            .collect();
        for (k, v) in pairs {
            fields.insert(k.to_string(), v.clone());
        }
        Value::Object(fields)
    }

    fn prior() -> Value {
        object(&[
            ("id", "longhorn-system/data".into()),
            ("name", "data".into()),
            ("namespace", "longhorn-system".into()),
            ("size", "20Gi".into()),
            ("size_bytes", Value::int(20 << 30)),
            ("number_of_replicas", Value::int(2)),
            ("data_locality", "disabled".into()),
            ("encrypted", Value::Bool(false)),
            ("data_engine", "v1".into()),
            ("deletion_protection", Value::Bool(false)),
            (
                "applied_fields",
                Value::List(vec!["number_of_replicas".into()]),
            ),
            ("state", "detached".into()),
        ])
    }

    async fn plan(prior: Value, config: Value) -> (PlannedChange, Diagnostics) {
        let resource = VolumeResource::new(Arc::new(connection::connection()));
        let schema = resource.schema();
        // Terraform's proposal: config, or prior for optional+computed left unset.
        let mut proposed = config.clone();
        for attribute in &schema.block.attributes {
            if attribute.is_computed() && config.attr(attribute.name).is_null() {
                proposed
                    .as_object_mut()
                    .unwrap()
                    .insert(attribute.name.into(), prior.attr(attribute.name).clone());
            }
        }
        let mut change = plan_resource_change(&schema, prior, config, proposed);
        let mut diags = Diagnostics::new();
        resource
            .modify_plan(&Context::default(), &mut change, &mut diags)
            .await;
        (change, diags)
    }

    #[tokio::test]
    async fn growth_is_in_place_and_leaves_unset_immutables_alone() {
        let config = object(&[
            ("name", "data".into()),
            ("size", "30Gi".into()),
            ("number_of_replicas", Value::int(2)),
            ("deletion_protection", Value::Bool(false)),
        ]);
        let (change, diags) = plan(prior(), config).await;
        assert!(!diags.has_errors(), "{diags:?}");
        assert!(
            change.requires_replace.is_empty(),
            "{:?}",
            change.requires_replace
        );
        assert_eq!(change.planned.attr("size_bytes"), &Value::int(30 << 30));
        assert_eq!(change.planned.attr("encrypted"), &Value::Bool(false));
        assert_eq!(
            change.planned.attr("namespace"),
            &Value::string("longhorn-system")
        );
        assert_eq!(
            change.planned.attr("applied_fields"),
            &Value::List(vec!["number_of_replicas".into()])
        );
    }

    #[tokio::test]
    async fn shrink_is_refused_and_rounding_is_no_change() {
        let mut config = object(&[
            ("name", "data".into()),
            ("size", "10Gi".into()),
            ("number_of_replicas", Value::int(2)),
        ]);
        let (_, diags) = plan(prior(), config.clone()).await;
        let d = diags.iter().next().expect("an error");
        assert_eq!(d.path, Some(AttrPath::root("size")));
        assert!(d.detail.contains("current 20Gi"), "{}", d.detail);
        config
            .as_object_mut()
            .unwrap()
            .insert("size".into(), "20480Mi".into());
        let (change, diags) = plan(prior(), config).await;
        assert!(!diags.has_errors());
        assert_eq!(change.planned.attr("size_bytes"), &Value::int(20 << 30));
    }

    #[tokio::test]
    async fn immutable_change_replaces_and_protection_refuses_it() {
        let config = object(&[
            ("name", "data".into()),
            ("size", "20Gi".into()),
            ("number_of_replicas", Value::int(2)),
            ("data_engine", "v2".into()),
            ("deletion_protection", Value::Bool(false)),
        ]);
        let (change, diags) = plan(prior(), config.clone()).await;
        assert!(!diags.has_errors());
        assert_eq!(change.requires_replace, vec![AttrPath::root("data_engine")]);
        let mut protected = prior();
        protected
            .as_object_mut()
            .unwrap()
            .insert("deletion_protection".into(), Value::Bool(true));
        let (_, diags) = plan(protected, config).await;
        assert!(diags
            .iter()
            .any(|d| d.summary == "Replacing a protected volume"));
    }

    #[tokio::test]
    async fn a_released_field_goes_back_to_longhorn() {
        let config = object(&[("name", "data".into()), ("size", "20Gi".into())]);
        let (change, _) = plan(prior(), config).await;
        assert!(change.planned.attr("number_of_replicas").is_unknown());
        assert_eq!(change.planned.attr("applied_fields"), &Value::List(vec![]));
    }

    #[test]
    fn strict_local_needs_one_replica() {
        let resource = VolumeResource::new(Arc::new(connection::connection()));
        let mut diags = Diagnostics::new();
        let config = object(&[
            ("data_locality", "strict-local".into()),
            ("number_of_replicas", Value::int(2)),
        ]);
        resource.validate_config(&config, &mut diags);
        assert_eq!(
            diags.iter().next().unwrap().path,
            Some(AttrPath::root("number_of_replicas"))
        );
    }
}
