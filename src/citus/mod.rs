//! The `shardform/citus` provider: Citus membership and shard layout as code.

mod cluster;
mod connection;
mod distributed_table;
mod rebalance;
mod retry;

pub use cluster::ClusterResource;
pub use connection::ConnectionDefaults;
pub use distributed_table::DistributedTableResource;

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Block, Diagnostics, Provider, Resource, Schema};

pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/shardform/citus";

pub struct CitusProvider {
    defaults: Arc<ConnectionDefaults>,
}

pub fn provider() -> CitusProvider {
    CitusProvider {
        defaults: Arc::new(ConnectionDefaults::default()),
    }
}

#[async_trait]
impl Provider for CitusProvider {
    fn schema(&self) -> Schema {
        let mut block = Block::new(
            "Manages Citus clusters: node membership, rebalancing and distributed tables. \
             The connection settings here are defaults for every resource; a resource's own \
             `connection` block overrides them attribute by attribute.",
        );
        block.attributes = connection::attributes();
        Schema::new(0, block)
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![
            Arc::new(ClusterResource::new(self.defaults.clone())),
            Arc::new(DistributedTableResource::new(self.defaults.clone())),
        ]
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        connection::validate_pairs(config, None, diags);
    }

    async fn configure(&self, config: &Value, diags: &mut Diagnostics) {
        let config = connection::with_libpq_environment(config, |name| std::env::var(name).ok(), diags);
        self.defaults.set(&config);
    }
}
