//! `tfplugin5.Provider` served from a framework [`Provider`]: the one place
//! where wire messages become framework values and back.
//!
//! Failures are reported as error diagnostics inside OK responses; gRPC
//! errors would reach the user only as a generic message.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::capture;
use super::wire::tfplugin5 as wire;
use crate::cty::{self, Type, Value};
use crate::framework::{
    self, write_only, AttrPath, Block, Context, DataSource, Diagnostics, Nesting, PathStep, Presence, Provider,
    Resource, Schema, Severity, StopSignal,
};

pub struct ProviderService {
    provider: Arc<dyn Provider>,
    resources: HashMap<&'static str, Arc<dyn Resource>>,
    data_sources: HashMap<&'static str, Arc<dyn DataSource>>,
    stop: StopSignal,
}

impl ProviderService {
    pub fn new(provider: impl Provider) -> Self {
        let resources = provider
            .resources()
            .into_iter()
            .map(|r| (r.type_name(), r))
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|d| (d.type_name(), d))
            .collect();
        ProviderService {
            provider: Arc::new(provider),
            resources,
            data_sources,
            stop: StopSignal::default(),
        }
    }

    fn context(&self) -> Context {
        Context {
            stop: self.stop.clone(),
        }
    }

    fn resource(&self, type_name: &str, diags: &mut Diagnostics) -> Option<Arc<dyn Resource>> {
        let found = self.resources.get(type_name).cloned();
        if found.is_none() {
            diags.error(
                "Unknown resource type",
                format!("This provider has no resource type {type_name:?}."),
            );
        }
        found
    }

    fn data_source(&self, type_name: &str, diags: &mut Diagnostics) -> Option<Arc<dyn DataSource>> {
        let found = self.data_sources.get(type_name).cloned();
        if found.is_none() {
            diags.error(
                "Unknown data source",
                format!("This provider has no data source {type_name:?}."),
            );
        }
        found
    }
}

/// The RPCs themselves; the gRPC trait below wraps each in [`guarded`].
impl ProviderService {
    async fn get_schema(&self, _request: wire::get_provider_schema::Request) -> wire::get_provider_schema::Response {
        wire::get_provider_schema::Response {
            provider: Some(schema_to_wire(&self.provider.schema())),
            resource_schemas: self
                .resources
                .iter()
                .map(|(n, r)| (n.to_string(), schema_to_wire(&r.schema())))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(n, d)| (n.to_string(), schema_to_wire(&d.schema())))
                .collect(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(server_capabilities()),
        }
    }

    async fn prepare_provider_config(&self, request: wire::prepare_provider_config::Request) -> wire::prepare_provider_config::Response {
        capture::value(
            "PrepareProviderConfig",
            "config",
            "provider",
            request.config.as_ref(),
        );
        let schema = self.provider.schema();
        let mut diags = Diagnostics::new();
        if let Some(config) = decode(request.config.as_ref(), &schema.value_type(), &mut diags) {
            framework::validate_block(&schema.block, &config, &AttrPath::default(), &mut diags);
            self.provider.validate_config(&config, &mut diags);
        }
        wire::prepare_provider_config::Response {
            prepared_config: request.config,
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn validate_resource_type_config(&self, request: wire::validate_resource_type_config::Request) -> wire::validate_resource_type_config::Response {
        capture::value(
            "ValidateResourceTypeConfig",
            "config",
            &request.type_name,
            request.config.as_ref(),
        );
        let mut diags = Diagnostics::new();
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let schema = resource.schema();
            if let Some(config) = decode(request.config.as_ref(), &schema.value_type(), &mut diags)
            {
                framework::validate_block(&schema.block, &config, &AttrPath::default(), &mut diags);
                let write_only_allowed = request
                    .client_capabilities
                    .is_some_and(|c| c.write_only_attributes_allowed);
                if !write_only_allowed {
                    write_only::refuse_unsupported(&schema.block, &config, &AttrPath::default(), &mut diags);
                }
                resource.validate_config(&config, &mut diags);
            }
        }
        wire::validate_resource_type_config::Response {
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn validate_data_source_config(&self, request: wire::validate_data_source_config::Request) -> wire::validate_data_source_config::Response {
        let mut diags = Diagnostics::new();
        if let Some(data_source) = self.data_source(&request.type_name, &mut diags) {
            let schema = data_source.schema();
            if let Some(config) = decode(request.config.as_ref(), &schema.value_type(), &mut diags)
            {
                framework::validate_block(&schema.block, &config, &AttrPath::default(), &mut diags);
                data_source.validate_config(&config, &mut diags);
            }
        }
        wire::validate_data_source_config::Response {
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn upgrade_resource_state(&self, request: wire::upgrade_resource_state::Request) -> wire::upgrade_resource_state::Response {
        let mut diags = Diagnostics::new();
        let mut upgraded_state = None;
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let schema = resource.schema();
            let ty = schema.value_type();
            let json = request.raw_state.map(|r| r.json).unwrap_or_default();
            capture::raw_state(&request.type_name, &json);
            match cty::decode_json(&json, &ty) {
                Ok(state) => {
                    let state = normalize_blocks(&schema.block, state);
                    let state = resource.upgrade_state(request.version, state, &mut diags);
                    upgraded_state = encode(&state, &ty, &mut diags);
                }
                Err(e) => diags.error(
                    "Unreadable stored state",
                    format!(
                        "The state of {} could not be decoded: {e}",
                        request.type_name
                    ),
                ),
            }
        }
        wire::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn configure(&self, request: wire::configure::Request) -> wire::configure::Response {
        let mut diags = Diagnostics::new();
        log::debug!("configure from Terraform {}", request.terraform_version);
        capture::value("Configure", "config", "provider", request.config.as_ref());
        if let Some(config) = decode(
            request.config.as_ref(),
            &self.provider.schema().value_type(),
            &mut diags,
        ) {
            self.provider.configure(&config, &mut diags).await;
        }
        wire::configure::Response {
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn read_resource(&self, request: wire::read_resource::Request) -> wire::read_resource::Response {
        let mut diags = Diagnostics::new();
        let mut new_state = None;
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let ty = resource.schema().value_type();
            capture::value(
                "ReadResource",
                "current_state",
                &request.type_name,
                request.current_state.as_ref(),
            );
            if let Some(state) = decode(request.current_state.as_ref(), &ty, &mut diags) {
                let read = resource.read(&self.context(), &state, &mut diags).await;
                // A failed read keeps the prior state rather than dropping the object.
                let value = match read {
                    Some(v) => v,
                    None if diags.has_errors() => state,
                    None => Value::Null,
                };
                let block = &resource.schema().block;
                new_state = encode(&write_only::nulled(block, value), &ty, &mut diags);
            }
        }
        wire::read_resource::Response {
            new_state,
            diagnostics: diags_to_wire(diags),
            private: request.private,
        }
    }

    async fn plan_resource_change(&self, request: wire::plan_resource_change::Request) -> wire::plan_resource_change::Response {
        let mut diags = Diagnostics::new();
        let mut planned_state = None;
        let mut requires_replace = Vec::new();
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let schema = resource.schema();
            let ty = schema.value_type();
            capture::value(
                "PlanResourceChange",
                "prior_state",
                &request.type_name,
                request.prior_state.as_ref(),
            );
            capture::value(
                "PlanResourceChange",
                "proposed_new_state",
                &request.type_name,
                request.proposed_new_state.as_ref(),
            );
            capture::value(
                "PlanResourceChange",
                "config",
                &request.type_name,
                request.config.as_ref(),
            );
            let prior = decode(request.prior_state.as_ref(), &ty, &mut diags);
            let proposed = decode(request.proposed_new_state.as_ref(), &ty, &mut diags);
            let config = decode(request.config.as_ref(), &ty, &mut diags);
            if let (Some(prior), Some(proposed), Some(config)) = (prior, proposed, config) {
                // Write-only values are in `config` only; compared as planned
                // values they would read as a change on every plan.
                let proposed = write_only::nulled(&schema.block, proposed);
                let mut change = framework::plan_resource_change(&schema, prior, config, proposed);
                // Also for destroy plans, where a resource can refuse what destroy would do.
                resource
                    .modify_plan(&self.context(), &mut change, &mut diags)
                    .await;
                let planned = write_only::nulled(&schema.block, change.planned);
                planned_state = encode(&planned, &ty, &mut diags);
                requires_replace = change.requires_replace.iter().map(path_to_wire).collect();
            }
        }
        wire::plan_resource_change::Response {
            planned_state,
            requires_replace,
            planned_private: request.prior_private,
            diagnostics: diags_to_wire(diags),
            legacy_type_system: false,
        }
    }

    async fn apply_resource_change(&self, request: wire::apply_resource_change::Request) -> wire::apply_resource_change::Response {
        let mut diags = Diagnostics::new();
        let mut new_state = None;
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let schema = resource.schema();
            let ty = schema.value_type();
            capture::value(
                "ApplyResourceChange",
                "prior_state",
                &request.type_name,
                request.prior_state.as_ref(),
            );
            capture::value(
                "ApplyResourceChange",
                "planned_state",
                &request.type_name,
                request.planned_state.as_ref(),
            );
            let prior = decode(request.prior_state.as_ref(), &ty, &mut diags);
            let planned = decode(request.planned_state.as_ref(), &ty, &mut diags);
            let config = decode(request.config.as_ref(), &ty, &mut diags);
            if let (Some(prior), Some(planned), Some(config)) = (prior, planned, config) {
                // The resource reads write-only values where it reads the others.
                let planned = write_only::from_config(&schema.block, planned, &config);
                let ctx = self.context();
                let result = match (prior.is_null(), planned.is_null()) {
                    (_, true) => {
                        resource.delete(&ctx, &prior, &mut diags).await;
                        // A failed delete keeps the object in state.
                        if diags.has_errors() {
                            prior
                        } else {
                            Value::Null
                        }
                    }
                    (true, false) => resource.create(&ctx, &planned, &mut diags).await,
                    (false, false) => resource.update(&ctx, &prior, &planned, &mut diags).await,
                };
                new_state = encode(&write_only::nulled(&schema.block, result), &ty, &mut diags);
            }
        }
        wire::apply_resource_change::Response {
            new_state,
            private: request.planned_private,
            diagnostics: diags_to_wire(diags),
            legacy_type_system: false,
        }
    }

    async fn import_resource_state(&self, request: wire::import_resource_state::Request) -> wire::import_resource_state::Response {
        let mut diags = Diagnostics::new();
        let mut imported_resources = Vec::new();
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let ty = resource.schema().value_type();
            if let Some(state) = resource
                .import(&self.context(), &request.id, &mut diags)
                .await
            {
                let state = write_only::nulled(&resource.schema().block, state);
                if let Some(state) = encode(&state, &ty, &mut diags) {
                    imported_resources.push(wire::import_resource_state::ImportedResource {
                        type_name: request.type_name.clone(),
                        state: Some(state),
                        private: Vec::new(),
                    });
                }
            }
        }
        wire::import_resource_state::Response {
            imported_resources,
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn read_data_source(&self, request: wire::read_data_source::Request) -> wire::read_data_source::Response {
        let mut diags = Diagnostics::new();
        let mut state = None;
        if let Some(data_source) = self.data_source(&request.type_name, &mut diags) {
            let ty = data_source.schema().value_type();
            if let Some(config) = decode(request.config.as_ref(), &ty, &mut diags) {
                let value = data_source.read(&self.context(), &config, &mut diags).await;
                state = encode(&value, &ty, &mut diags);
            }
        }
        wire::read_data_source::Response {
            state,
            diagnostics: diags_to_wire(diags),
        }
    }

    async fn stop(&self, _request: wire::stop::Request) -> wire::stop::Response {
        log::info!("stop requested: ending waits; server-side jobs keep running and are adopted by the next apply");
        self.stop.stop();
        wire::stop::Response {
            error: String::new(),
        }
    }

    /// 5.4: what `GetSchema` would list, without the schemas.
    async fn get_metadata(&self, _request: wire::get_metadata::Request) -> wire::get_metadata::Response {
        let mut resources: Vec<_> = self.resources.keys().map(|n| n.to_string()).collect();
        let mut data_sources: Vec<_> = self.data_sources.keys().map(|n| n.to_string()).collect();
        resources.sort();
        data_sources.sort();
        wire::get_metadata::Response {
            server_capabilities: Some(server_capabilities()),
            diagnostics: Vec::new(),
            data_sources: data_sources
                .into_iter()
                .map(|type_name| wire::get_metadata::DataSourceMetadata { type_name })
                .collect(),
            resources: resources
                .into_iter()
                .map(|type_name| wire::get_metadata::ResourceMetadata { type_name })
                .collect(),
        }
    }

    /// 5.9 (Terraform 1.12) asks on every schema load: no resource has an identity.
    async fn get_resource_identity_schemas(
        &self,
        _request: wire::get_resource_identity_schemas::Request,
    ) -> wire::get_resource_identity_schemas::Response {
        wire::get_resource_identity_schemas::Response::default()
    }

    /// 5.5: the provider offers no functions.
    async fn get_functions(&self, _request: wire::get_functions::Request) -> wire::get_functions::Response {
        wire::get_functions::Response::default()
    }

    /// 5.5: `moved` blocks between resource types. Terraform only calls this
    /// for a `moved` block naming one of our types; say plainly it cannot be.
    async fn move_resource_state(
        &self,
        request: wire::move_resource_state::Request,
    ) -> wire::move_resource_state::Response {
        let mut diags = Diagnostics::new();
        diags.error(
            "Moving state between resource types is not supported",
            format!(
                "{} cannot take over the state of {} ({}). Remove the `moved` block, and import the object \
                 into {} instead.",
                request.target_type_name,
                request.source_type_name,
                request.source_provider_address,
                request.target_type_name
            ),
        );
        wire::move_resource_state::Response {
            diagnostics: diags_to_wire(diags),
            ..Default::default()
        }
    }
}

/// Advertised in `GetSchema` and `GetMetadata`.
fn server_capabilities() -> wire::ServerCapabilities {
    wire::ServerCapabilities {
        // Destroy-time refusals (deletion protection, a worker holding data)
        // then show in `terraform plan -destroy`, not only at apply.
        plan_destroy: true,
        // Every schema is static: a cached copy is as good as a fresh one.
        get_provider_schema_optional: true,
        move_resource_state: false,
    }
}

/// A response that can carry an error diagnostic in place of its result.
trait FailedResponse: Default {
    fn with_error(diagnostic: wire::Diagnostic) -> Self;
}

macro_rules! failed_response_with_diagnostics {
    ($($response:ty),* $(,)?) => {$(
        impl FailedResponse for $response {
            fn with_error(diagnostic: wire::Diagnostic) -> Self {
                Self { diagnostics: vec![diagnostic], ..Default::default() }
            }
        }
    )*};
}

failed_response_with_diagnostics!(
    wire::get_metadata::Response,
    wire::get_provider_schema::Response,
    wire::prepare_provider_config::Response,
    wire::validate_resource_type_config::Response,
    wire::validate_data_source_config::Response,
    wire::upgrade_resource_state::Response,
    wire::get_resource_identity_schemas::Response,
    wire::configure::Response,
    wire::plan_resource_change::Response,
    wire::import_resource_state::Response,
    wire::move_resource_state::Response,
    wire::read_data_source::Response,
    wire::get_functions::Response,
);

impl FailedResponse for wire::stop::Response {
    fn with_error(diagnostic: wire::Diagnostic) -> Self {
        Self {
            error: format!("{}: {}", diagnostic.summary, diagnostic.detail),
        }
    }
}

/// Runs one RPC so that a panic in it (a bug) becomes an error diagnostic
/// naming the RPC instead of a dropped connection, which Terraform reports
/// only as "Request cancelled" and after which the plugin is gone.
async fn guarded<R: FailedResponse>(
    rpc: &'static str,
    call: impl std::future::Future<Output = R>,
) -> Result<Response<R>, Status> {
    guarded_with(rpc, call, R::with_error).await
}

/// [`guarded`] with the response to give instead: read and apply must hand
/// back the state they were given, or Terraform would forget the object.
async fn guarded_with<R>(
    rpc: &'static str,
    call: impl std::future::Future<Output = R>,
    on_panic: impl FnOnce(wire::Diagnostic) -> R,
) -> Result<Response<R>, Status> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(response) => Ok(Response::new(response)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            // The message goes to the log only: a panic may format a value, secrets included.
            log::error!("{rpc} panicked: {message}");
            Ok(Response::new(on_panic(panic_diagnostic(rpc))))
        }
    }
}

fn panic_diagnostic(rpc: &str) -> wire::Diagnostic {
    wire::Diagnostic {
        severity: wire::diagnostic::Severity::Error as i32,
        summary: format!("Internal error in the provider during {rpc}"),
        detail: "The provider hit a bug and abandoned this call; its state is unchanged and the provider is \
                 still running. The provider's log (TF_LOG=error or finer) has the panic message. Please report \
                 this with the configuration that caused it."
            .to_string(),
        attribute: None,
    }
}

macro_rules! guarded_rpcs {
    ($($method:ident($request:ty) -> $response:ty = $rpc:literal;)*) => {
        #[tonic::async_trait]
        impl wire::provider_server::Provider for ProviderService {
            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    guarded($rpc, ProviderService::$method(self, request.into_inner())).await
                }
            )*

            async fn read_resource(
                &self,
                request: Request<wire::read_resource::Request>,
            ) -> Result<Response<wire::read_resource::Response>, Status> {
                let request = request.into_inner();
                let (current, private) = (request.current_state.clone(), request.private.clone());
                let call = ProviderService::read_resource(self, request);
                guarded_with("ReadResource", call, |diagnostic| wire::read_resource::Response {
                    new_state: current,
                    private,
                    diagnostics: vec![diagnostic],
                })
                .await
            }

            async fn apply_resource_change(
                &self,
                request: Request<wire::apply_resource_change::Request>,
            ) -> Result<Response<wire::apply_resource_change::Response>, Status> {
                let request = request.into_inner();
                // Null prior (a create): nothing to keep. Otherwise the object stays as it was.
                let prior = request.prior_state.clone();
                let call = ProviderService::apply_resource_change(self, request);
                guarded_with("ApplyResourceChange", call, |diagnostic| wire::apply_resource_change::Response {
                    new_state: prior,
                    diagnostics: vec![diagnostic],
                    ..Default::default()
                })
                .await
            }
        }
    };
}

guarded_rpcs! {
    get_metadata(wire::get_metadata::Request) -> wire::get_metadata::Response = "GetMetadata";
    get_schema(wire::get_provider_schema::Request) -> wire::get_provider_schema::Response = "GetSchema";
    prepare_provider_config(wire::prepare_provider_config::Request) -> wire::prepare_provider_config::Response = "PrepareProviderConfig";
    validate_resource_type_config(wire::validate_resource_type_config::Request) -> wire::validate_resource_type_config::Response = "ValidateResourceTypeConfig";
    validate_data_source_config(wire::validate_data_source_config::Request) -> wire::validate_data_source_config::Response = "ValidateDataSourceConfig";
    upgrade_resource_state(wire::upgrade_resource_state::Request) -> wire::upgrade_resource_state::Response = "UpgradeResourceState";
    get_resource_identity_schemas(wire::get_resource_identity_schemas::Request) -> wire::get_resource_identity_schemas::Response = "GetResourceIdentitySchemas";
    configure(wire::configure::Request) -> wire::configure::Response = "Configure";
    plan_resource_change(wire::plan_resource_change::Request) -> wire::plan_resource_change::Response = "PlanResourceChange";
    import_resource_state(wire::import_resource_state::Request) -> wire::import_resource_state::Response = "ImportResourceState";
    move_resource_state(wire::move_resource_state::Request) -> wire::move_resource_state::Response = "MoveResourceState";
    read_data_source(wire::read_data_source::Request) -> wire::read_data_source::Response = "ReadDataSource";
    get_functions(wire::get_functions::Request) -> wire::get_functions::Response = "GetFunctions";
    stop(wire::stop::Request) -> wire::stop::Response = "Stop";
}

/// Decodes a dynamic value; `None` (with a diagnostic) when it cannot be.
fn decode(value: Option<&wire::DynamicValue>, ty: &Type, diags: &mut Diagnostics) -> Option<Value> {
    let Some(value) = value else {
        return Some(Value::Null);
    };
    let decoded = if !value.msgpack.is_empty() {
        cty::decode_msgpack(&value.msgpack, ty).map_err(|e| e.to_string())
    } else if !value.json.is_empty() {
        cty::decode_json(&value.json, ty).map_err(|e| e.to_string())
    } else {
        Ok(Value::Null)
    };
    match decoded {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error(
                "Malformed value from Terraform",
                format!("The provider could not decode a value: {e}"),
            );
            None
        }
    }
}

fn encode(value: &Value, ty: &Type, diags: &mut Diagnostics) -> Option<wire::DynamicValue> {
    match cty::encode_msgpack(value, ty) {
        Ok(msgpack) => Some(wire::DynamicValue {
            msgpack,
            json: Vec::new(),
        }),
        Err(e) => {
            diags.error(
                "Provider produced a malformed value",
                format!("This is a bug in the provider: {e}"),
            );
            None
        }
    }
}

/// Nested list and map blocks are never null on the wire; state written by an
/// older schema may lack them.
fn normalize_blocks(block: &Block, value: Value) -> Value {
    let Value::Object(mut fields) = value else {
        return value;
    };
    for nested in &block.blocks {
        let v = fields.remove(nested.name).unwrap_or(Value::Null);
        let v = match (nested.nesting, v) {
            (Nesting::Single, v) => normalize_blocks(&nested.block, v),
            (_, Value::Null) => nested.empty_value(),
            (Nesting::List, Value::List(items)) => Value::List(
                items
                    .into_iter()
                    .map(|i| normalize_blocks(&nested.block, i))
                    .collect(),
            ),
            (Nesting::Map, Value::Map(items)) => Value::Map(
                items
                    .into_iter()
                    .map(|(k, i)| (k, normalize_blocks(&nested.block, i)))
                    .collect(),
            ),
            (_, v) => v,
        };
        fields.insert(nested.name.to_string(), v);
    }
    Value::Object(fields)
}

pub fn schema_to_wire(schema: &Schema) -> wire::Schema {
    wire::Schema {
        version: schema.version,
        block: Some(block_to_wire(&schema.block)),
    }
}

fn block_to_wire(block: &Block) -> wire::schema::Block {
    wire::schema::Block {
        version: 0,
        attributes: block
            .attributes
            .iter()
            .map(|a| wire::schema::Attribute {
                name: a.name.to_string(),
                r#type: a.ty.to_json_bytes(),
                description: a.description.clone(),
                required: a.presence == Presence::Required,
                optional: matches!(a.presence, Presence::Optional | Presence::OptionalComputed),
                computed: a.is_computed(),
                sensitive: a.sensitive,
                description_kind: wire::StringKind::Markdown as i32,
                deprecated: false,
                write_only: a.write_only,
            })
            .collect(),
        block_types: block
            .blocks
            .iter()
            .map(|b| wire::schema::NestedBlock {
                type_name: b.name.to_string(),
                block: Some(block_to_wire(&b.block)),
                nesting: match b.nesting {
                    Nesting::Single => wire::schema::nested_block::NestingMode::Single,
                    Nesting::List => wire::schema::nested_block::NestingMode::List,
                    Nesting::Map => wire::schema::nested_block::NestingMode::Map,
                } as i32,
                min_items: b.min_items,
                max_items: b.max_items,
            })
            .collect(),
        description: block.description.clone(),
        description_kind: wire::StringKind::Markdown as i32,
        deprecated: false,
    }
}

fn diags_to_wire(diags: Diagnostics) -> Vec<wire::Diagnostic> {
    diags
        .into_vec()
        .into_iter()
        .map(|d| wire::Diagnostic {
            severity: match d.severity {
                Severity::Error => wire::diagnostic::Severity::Error,
                Severity::Warning => wire::diagnostic::Severity::Warning,
            } as i32,
            summary: d.summary,
            detail: d.detail,
            attribute: d.path.as_ref().map(path_to_wire),
        })
        .collect()
}

fn path_to_wire(path: &AttrPath) -> wire::AttributePath {
    use wire::attribute_path::step::Selector;
    wire::AttributePath {
        steps: path
            .0
            .iter()
            .map(|step| wire::attribute_path::Step {
                selector: Some(match step {
                    PathStep::Attribute(name) => Selector::AttributeName(name.clone()),
                    PathStep::Key(key) => Selector::ElementKeyString(key.clone()),
                    PathStep::Index(index) => Selector::ElementKeyInt(*index),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Attribute, PlannedChange};
    use async_trait::async_trait;
    use wire::provider_server::Provider as Rpc;

    /// A resource whose every operation is a bug.
    struct Panicking;

    #[async_trait]
    impl Resource for Panicking {
        fn type_name(&self) -> &'static str {
            "test_panic"
        }
        fn schema(&self) -> Schema {
            Schema::new(
                0,
                Block::new("")
                    .attribute(Attribute::optional("name", Type::String))
                    .attribute(Attribute::optional("secret_wo", Type::String).write_only()),
            )
        }
        fn validate_config(&self, _: &Value, _: &mut Diagnostics) {
            panic!("validate exploded");
        }
        async fn modify_plan(&self, _: &Context, _: &mut PlannedChange, _: &mut Diagnostics) {
            let overflow: Option<u16> = None;
            overflow.expect("plan exploded");
        }
        async fn create(&self, _: &Context, planned: &Value, _: &mut Diagnostics) -> Value {
            panic!("create exploded with {}", planned.attr("name").as_str().unwrap_or(""));
        }
        async fn read(&self, _: &Context, _: &Value, _: &mut Diagnostics) -> Option<Value> {
            unreachable!("read exploded")
        }
        async fn update(&self, _: &Context, _: &Value, _: &Value, _: &mut Diagnostics) -> Value {
            unreachable!()
        }
        async fn delete(&self, _: &Context, _: &Value, _: &mut Diagnostics) {}
    }

    /// A resource that keeps whatever it is given, and remembers the secret it saw.
    #[derive(Default)]
    struct Echo {
        seen_secret: std::sync::Mutex<Option<String>>,
    }

    #[async_trait]
    impl Resource for Echo {
        fn type_name(&self) -> &'static str {
            "test_echo"
        }
        fn schema(&self) -> Schema {
            Panicking.schema()
        }
        async fn create(&self, _: &Context, planned: &Value, _: &mut Diagnostics) -> Value {
            *self.seen_secret.lock().unwrap() = planned.attr("secret_wo").as_str().map(str::to_string);
            planned.clone()
        }
        async fn read(&self, _: &Context, state: &Value, _: &mut Diagnostics) -> Option<Value> {
            Some(state.clone())
        }
        async fn update(&self, ctx: &Context, _: &Value, planned: &Value, diags: &mut Diagnostics) -> Value {
            self.create(ctx, planned, diags).await
        }
        async fn delete(&self, _: &Context, _: &Value, _: &mut Diagnostics) {}
    }

    struct EchoProvider(Arc<Echo>);

    #[async_trait]
    impl Provider for EchoProvider {
        fn schema(&self) -> Schema {
            Schema::new(0, Block::new(""))
        }
        fn resources(&self) -> Vec<Arc<dyn Resource>> {
            vec![self.0.clone()]
        }
        async fn configure(&self, _: &Value, _: &mut Diagnostics) {}
    }

    fn decoded(value: Option<wire::DynamicValue>) -> Value {
        cty::decode_msgpack(&value.unwrap().msgpack, &Panicking.schema().value_type()).unwrap()
    }

    #[tokio::test]
    async fn write_only_values_reach_apply_and_never_leave_the_provider() {
        let echo = Arc::new(Echo::default());
        let provider = ProviderService::new(EchoProvider(echo.clone()));
        let service: &dyn Rpc = &provider;
        let with_secret = config(Value::string("s3cret"));
        let validate = |caps: Option<wire::ClientCapabilities>| wire::validate_resource_type_config::Request {
            type_name: "test_echo".into(),
            config: dynamic(&with_secret),
            client_capabilities: caps,
        };
        // Terraform 1.0.3 sends no capabilities: refused at the attribute; 1.11 allows it.
        let old = service.validate_resource_type_config(Request::new(validate(None))).await.unwrap().into_inner();
        let error = only_error(&old.diagnostics);
        assert_eq!(error.summary, "Write-only attribute needs Terraform 1.11");
        assert!(!error.detail.contains("s3cret"));
        let caps = wire::ClientCapabilities { deferral_allowed: false, write_only_attributes_allowed: true };
        let new = service.validate_resource_type_config(Request::new(validate(Some(caps)))).await.unwrap().into_inner();
        assert!(new.diagnostics.is_empty(), "{:?}", new.diagnostics);

        // Plan: null in the planned state, even when Terraform proposes the value.
        let planned = service
            .plan_resource_change(Request::new(wire::plan_resource_change::Request {
                type_name: "test_echo".into(),
                prior_state: dynamic(&Value::Null),
                proposed_new_state: dynamic(&with_secret),
                config: dynamic(&with_secret),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(planned.diagnostics.is_empty(), "{:?}", planned.diagnostics);
        let planned = decoded(planned.planned_state);
        assert!(planned.attr("secret_wo").is_null() && planned.attr("name").as_str() == Some("x"));

        // Apply: the resource sees the configuration's value; the new state does not hold it.
        let applied = service
            .apply_resource_change(Request::new(wire::apply_resource_change::Request {
                type_name: "test_echo".into(),
                prior_state: dynamic(&Value::Null),
                planned_state: dynamic(&planned),
                config: dynamic(&with_secret),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(echo.seen_secret.lock().unwrap().as_deref(), Some("s3cret"));
        let state = decoded(applied.new_state);
        assert!(state.attr("secret_wo").is_null());

        // A state that somehow held one (written by hand) is read back without it.
        let read = service
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "test_echo".into(),
                current_state: dynamic(&with_secret),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(decoded(read.new_state).attr("secret_wo").is_null());
    }

    struct TestProvider;

    #[async_trait]
    impl Provider for TestProvider {
        fn schema(&self) -> Schema {
            Schema::new(0, Block::new(""))
        }
        fn resources(&self) -> Vec<Arc<dyn Resource>> {
            vec![Arc::new(Panicking)]
        }
        async fn configure(&self, _: &Value, _: &mut Diagnostics) {}
    }

    fn dynamic(value: &Value) -> Option<wire::DynamicValue> {
        let ty = Panicking.schema().value_type();
        Some(wire::DynamicValue {
            msgpack: cty::encode_msgpack(value, &ty).unwrap(),
            json: Vec::new(),
        })
    }

    fn config(secret: Value) -> Value {
        Value::Object(
            [("name".to_string(), Value::string("x")), ("secret_wo".to_string(), secret)]
                .into_iter()
                .collect(),
        )
    }

    fn only_error(diagnostics: &[wire::Diagnostic]) -> &wire::Diagnostic {
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].severity, wire::diagnostic::Severity::Error as i32);
        &diagnostics[0]
    }

    #[tokio::test]
    async fn a_panicking_resource_gets_an_error_diagnostic_naming_the_rpc() {
        let provider = ProviderService::new(TestProvider);
        let service: &dyn Rpc = &provider;
        let validated = service
            .validate_resource_type_config(Request::new(wire::validate_resource_type_config::Request {
                type_name: "test_panic".into(),
                config: dynamic(&config(Value::Null)),
                client_capabilities: None,
            }))
            .await
            .expect("a panic is no gRPC error")
            .into_inner();
        let error = only_error(&validated.diagnostics);
        assert_eq!(error.summary, "Internal error in the provider during ValidateResourceTypeConfig");
        // The panic message stays in the log: it could hold a formatted secret.
        assert!(!error.detail.contains("exploded") && error.detail.contains("TF_LOG"), "{}", error.detail);

        let planned = service
            .plan_resource_change(Request::new(wire::plan_resource_change::Request {
                type_name: "test_panic".into(),
                prior_state: dynamic(&Value::Null),
                proposed_new_state: dynamic(&config(Value::Null)),
                config: dynamic(&config(Value::Null)),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(only_error(&planned.diagnostics).summary.ends_with("during PlanResourceChange"));
        assert!(planned.planned_state.is_none());

        let applied = service
            .apply_resource_change(Request::new(wire::apply_resource_change::Request {
                type_name: "test_panic".into(),
                prior_state: dynamic(&Value::Null),
                planned_state: dynamic(&config(Value::Null)),
                config: dynamic(&config(Value::string("s3cret"))),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let error = only_error(&applied.diagnostics);
        assert!(error.summary.ends_with("during ApplyResourceChange"));
        assert!(!error.detail.contains("s3cret"), "{}", error.detail);
        // A failed create leaves nothing in state (the prior, null).
        assert_eq!(applied.new_state, dynamic(&Value::Null));

        // A panicking update keeps the prior object rather than forgetting it.
        let prior = config(Value::Null);
        let updated = service
            .apply_resource_change(Request::new(wire::apply_resource_change::Request {
                type_name: "test_panic".into(),
                prior_state: dynamic(&prior),
                planned_state: dynamic(&prior),
                config: dynamic(&prior),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.new_state, dynamic(&prior));

        // The service still answers after the panics.
        let read = service
            .read_resource(Request::new(wire::read_resource::Request {
                type_name: "test_panic".into(),
                current_state: dynamic(&config(Value::Null)),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(only_error(&read.diagnostics).summary.ends_with("during ReadResource"));
        // The object is kept: a null new state would make Terraform plan to create it.
        assert_eq!(read.new_state, dynamic(&config(Value::Null)));
    }

    #[tokio::test]
    async fn schema_marks_write_only_and_advertises_capabilities() {
        let provider = ProviderService::new(TestProvider);
        let service: &dyn Rpc = &provider;
        let schema = service.get_schema(Request::new(Default::default())).await.unwrap().into_inner();
        let attributes = &schema.resource_schemas["test_panic"].block.as_ref().unwrap().attributes;
        let secret = attributes.iter().find(|a| a.name == "secret_wo").unwrap();
        assert!(secret.write_only && secret.sensitive);
        let caps = schema.server_capabilities.unwrap();
        assert!(caps.plan_destroy && caps.get_provider_schema_optional);
    }

    #[tokio::test]
    async fn metadata_lists_types_and_capabilities_and_newer_rpcs_answer() {
        let provider = ProviderService::new(TestProvider);
        let service: &dyn Rpc = &provider;
        let metadata = service.get_metadata(Request::new(Default::default())).await.unwrap().into_inner();
        assert_eq!(metadata.resources.len(), 1);
        assert_eq!(metadata.resources[0].type_name, "test_panic");
        assert!(metadata.server_capabilities.unwrap().plan_destroy);
        let identities = service
            .get_resource_identity_schemas(Request::new(Default::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(identities.identity_schemas.is_empty() && identities.diagnostics.is_empty());
        let functions = service.get_functions(Request::new(Default::default())).await.unwrap().into_inner();
        assert!(functions.functions.is_empty() && functions.diagnostics.is_empty());
        let moved = service
            .move_resource_state(Request::new(wire::move_resource_state::Request {
                source_type_name: "null_resource".into(),
                target_type_name: "test_panic".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(only_error(&moved.diagnostics).detail.contains("import the object"));
    }
}
