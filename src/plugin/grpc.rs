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
    self, AttrPath, Block, Context, DataSource, Diagnostics, Nesting, PathStep, Presence, Provider,
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

#[tonic::async_trait]
impl wire::provider_server::Provider for ProviderService {
    async fn get_schema(
        &self,
        _: Request<wire::get_provider_schema::Request>,
    ) -> Result<Response<wire::get_provider_schema::Response>, Status> {
        Ok(Response::new(wire::get_provider_schema::Response {
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
        }))
    }

    async fn prepare_provider_config(
        &self,
        request: Request<wire::prepare_provider_config::Request>,
    ) -> Result<Response<wire::prepare_provider_config::Response>, Status> {
        let request = request.into_inner();
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
        Ok(Response::new(wire::prepare_provider_config::Response {
            prepared_config: request.config,
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn validate_resource_type_config(
        &self,
        request: Request<wire::validate_resource_type_config::Request>,
    ) -> Result<Response<wire::validate_resource_type_config::Response>, Status> {
        let request = request.into_inner();
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
                resource.validate_config(&config, &mut diags);
            }
        }
        Ok(Response::new(
            wire::validate_resource_type_config::Response {
                diagnostics: diags_to_wire(diags),
            },
        ))
    }

    async fn validate_data_source_config(
        &self,
        request: Request<wire::validate_data_source_config::Request>,
    ) -> Result<Response<wire::validate_data_source_config::Response>, Status> {
        let request = request.into_inner();
        let mut diags = Diagnostics::new();
        if let Some(data_source) = self.data_source(&request.type_name, &mut diags) {
            let schema = data_source.schema();
            if let Some(config) = decode(request.config.as_ref(), &schema.value_type(), &mut diags)
            {
                framework::validate_block(&schema.block, &config, &AttrPath::default(), &mut diags);
                data_source.validate_config(&config, &mut diags);
            }
        }
        Ok(Response::new(wire::validate_data_source_config::Response {
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<wire::upgrade_resource_state::Request>,
    ) -> Result<Response<wire::upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
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
        Ok(Response::new(wire::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn configure(
        &self,
        request: Request<wire::configure::Request>,
    ) -> Result<Response<wire::configure::Response>, Status> {
        let request = request.into_inner();
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
        Ok(Response::new(wire::configure::Response {
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<wire::read_resource::Request>,
    ) -> Result<Response<wire::read_resource::Response>, Status> {
        let request = request.into_inner();
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
                new_state = encode(&value, &ty, &mut diags);
            }
        }
        Ok(Response::new(wire::read_resource::Response {
            new_state,
            diagnostics: diags_to_wire(diags),
            private: request.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<wire::plan_resource_change::Request>,
    ) -> Result<Response<wire::plan_resource_change::Response>, Status> {
        let request = request.into_inner();
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
                let mut change = framework::plan_resource_change(&schema, prior, config, proposed);
                // Also for destroy plans, where a resource can warn of what destroy will refuse.
                resource
                    .modify_plan(&self.context(), &mut change, &mut diags)
                    .await;
                planned_state = encode(&change.planned, &ty, &mut diags);
                requires_replace = change.requires_replace.iter().map(path_to_wire).collect();
            }
        }
        Ok(Response::new(wire::plan_resource_change::Response {
            planned_state,
            requires_replace,
            planned_private: request.prior_private,
            diagnostics: diags_to_wire(diags),
            legacy_type_system: false,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<wire::apply_resource_change::Request>,
    ) -> Result<Response<wire::apply_resource_change::Response>, Status> {
        let request = request.into_inner();
        let mut diags = Diagnostics::new();
        let mut new_state = None;
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let ty = resource.schema().value_type();
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
            if let (Some(prior), Some(planned)) = (prior, planned) {
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
                new_state = encode(&result, &ty, &mut diags);
            }
        }
        Ok(Response::new(wire::apply_resource_change::Response {
            new_state,
            private: request.planned_private,
            diagnostics: diags_to_wire(diags),
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<wire::import_resource_state::Request>,
    ) -> Result<Response<wire::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        let mut diags = Diagnostics::new();
        let mut imported_resources = Vec::new();
        if let Some(resource) = self.resource(&request.type_name, &mut diags) {
            let ty = resource.schema().value_type();
            if let Some(state) = resource
                .import(&self.context(), &request.id, &mut diags)
                .await
            {
                if let Some(state) = encode(&state, &ty, &mut diags) {
                    imported_resources.push(wire::import_resource_state::ImportedResource {
                        type_name: request.type_name.clone(),
                        state: Some(state),
                        private: Vec::new(),
                    });
                }
            }
        }
        Ok(Response::new(wire::import_resource_state::Response {
            imported_resources,
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<wire::read_data_source::Request>,
    ) -> Result<Response<wire::read_data_source::Response>, Status> {
        let request = request.into_inner();
        let mut diags = Diagnostics::new();
        let mut state = None;
        if let Some(data_source) = self.data_source(&request.type_name, &mut diags) {
            let ty = data_source.schema().value_type();
            if let Some(config) = decode(request.config.as_ref(), &ty, &mut diags) {
                let value = data_source.read(&self.context(), &config, &mut diags).await;
                state = encode(&value, &ty, &mut diags);
            }
        }
        Ok(Response::new(wire::read_data_source::Response {
            state,
            diagnostics: diags_to_wire(diags),
        }))
    }

    async fn stop(
        &self,
        _: Request<wire::stop::Request>,
    ) -> Result<Response<wire::stop::Response>, Status> {
        log::info!("stop requested: ending waits; server-side jobs keep running and are adopted by the next apply");
        self.stop.stop();
        Ok(Response::new(wire::stop::Response {
            error: String::new(),
        }))
    }
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
