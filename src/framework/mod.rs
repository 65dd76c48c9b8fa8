//! The resource framework: how a provider author describes and implements a
//! resource. It carries Terraform's rules (unknowns, defaults, replacement,
//! null-means-gone) so a resource cannot get them wrong.

mod config;
mod diag;
mod plan;
mod schema;
mod stop;
pub mod timeouts;
pub mod validators;
mod wait;
pub mod write_only;

pub use config::validate_block;
pub use diag::{AttrPath, Diagnostic, Diagnostics, PathStep, Severity};
pub use plan::{plan_resource_change, PlannedChange};
pub use schema::{Attribute, Block, NestedBlock, Nesting, PlanModifier, Presence, Schema, RESERVED_RESOURCE_NAMES};
pub use stop::StopSignal;
pub use wait::{poll_until, WaitError};

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;

/// What every resource operation gets besides its values.
#[derive(Clone, Default)]
pub struct Context {
    /// Raised when Terraform sends `Stop` (Ctrl-C): waiting ends promptly,
    /// work already handed to a server keeps going there.
    pub stop: StopSignal,
}

/// A provider type: its configuration schema and the resources it serves.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider block's schema.
    fn schema(&self) -> Schema;

    fn resources(&self) -> Vec<Arc<dyn Resource>>;

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }

    /// Checks that need more than one attribute (per-attribute validators run first).
    fn validate_config(&self, _config: &Value, _diags: &mut Diagnostics) {}

    /// Keeps what resources need from the provider block. Values may still be
    /// unknown here when they come from resources not yet created.
    async fn configure(&self, config: &Value, diags: &mut Diagnostics);
}

/// A managed resource type. Values are objects of `schema().value_type()`.
#[async_trait]
pub trait Resource: Send + Sync {
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    /// Cross-attribute checks on the configuration (per-attribute validators
    /// already ran). Unknown values must be let through.
    fn validate_config(&self, _config: &Value, _diags: &mut Diagnostics) {}

    /// Refines the framework's plan: marks what apply will change as unknown,
    /// adds replacement paths, reports what only the live system can tell.
    /// Called for destroy plans too (`change.is_delete()`), where only
    /// diagnostics make sense.
    async fn modify_plan(
        &self,
        _ctx: &Context,
        _change: &mut PlannedChange,
        _diags: &mut Diagnostics,
    ) {
    }

    /// Creates the object. On failure, returns what exists (or null) along
    /// with the error, so the next apply picks up from there.
    async fn create(&self, ctx: &Context, planned: &Value, diags: &mut Diagnostics) -> Value;

    /// Reads the live object. `None` means it is gone, and Terraform plans to create it.
    async fn read(&self, ctx: &Context, state: &Value, diags: &mut Diagnostics) -> Option<Value>;

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value;

    async fn delete(&self, ctx: &Context, prior: &Value, diags: &mut Diagnostics);

    /// Builds state from an identifier; the default says import is unsupported.
    async fn import(&self, _ctx: &Context, _id: &str, diags: &mut Diagnostics) -> Option<Value> {
        diags.error(
            "Import not supported",
            format!("{} cannot be imported.", self.type_name()),
        );
        None
    }

    /// Moves a state written under an older schema version to the current one.
    /// The framework has already decoded it against the current schema,
    /// dropping attributes that no longer exist and nulling new ones.
    fn upgrade_state(&self, _from_version: i64, state: Value, _diags: &mut Diagnostics) -> Value {
        state
    }
}

/// A data source type.
#[async_trait]
pub trait DataSource: Send + Sync {
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    fn validate_config(&self, _config: &Value, _diags: &mut Diagnostics) {}

    async fn read(&self, ctx: &Context, config: &Value, diags: &mut Diagnostics) -> Value;
}
