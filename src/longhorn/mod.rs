//! The `shardform/longhorn` provider. Serves its provider schema; the
//! `longhorn_volume` resource is tracked in the issue tracker and not built yet.

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Block, Diagnostics, Provider, Resource, Schema};

pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/shardform/longhorn";

#[derive(Default)]
pub struct LonghornProvider;

pub fn provider() -> LonghornProvider {
    LonghornProvider
}

#[async_trait]
impl Provider for LonghornProvider {
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Longhorn volumes through the Kubernetes API."),
        )
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        Vec::new()
    }

    async fn configure(&self, _config: &Value, _diags: &mut Diagnostics) {}
}
