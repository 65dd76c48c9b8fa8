//! The `shardform/longhorn` provider: Longhorn volumes through the Kubernetes API.
//!
//! - [`connection`]: the provider block (the shared Kubernetes connection of
//!   [`crate::kubernetes`] and Longhorn's namespace), checked for Longhorn's CRD;
//! - [`api`]: the objects touched and this provider's field manager;
//! - [`quantity`]: sizes with units and Longhorn's rounding;
//! - `volume`: the `longhorn_volume` resource.

pub mod api;
pub mod connection;
pub mod quantity;
mod volume;

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Block, Diagnostics, Provider, Resource, Schema};
use connection::Connection;
pub use volume::VolumeResource;

pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/shardform/longhorn";

pub struct LonghornProvider {
    connection: Arc<Connection>,
}

pub fn provider() -> LonghornProvider {
    LonghornProvider {
        connection: Arc::new(connection::connection()),
    }
}

#[async_trait]
impl Provider for LonghornProvider {
    fn schema(&self) -> Schema {
        let mut block = Block::new(
            "Longhorn volumes through the Kubernetes API. Connect with a kubeconfig file \
             (`config_path`, `config_context`), with `host` and credentials given directly (as \
             Terraform Cloud variables), or, with nothing set, as the pod's service account.",
        );
        block.attributes = connection::attributes();
        Schema::new(0, block)
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(VolumeResource::new(self.connection.clone()))]
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        connection::validate(config, diags);
    }

    async fn configure(&self, config: &Value, _diags: &mut Diagnostics) {
        // No connection yet: it is made on first use, so values unknown at
        // plan time are planned, not rejected.
        self.connection.set(config);
    }
}
