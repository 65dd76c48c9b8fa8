//! The `shardform/pgpool` provider: highly available PostgreSQL node groups.

mod ha;

pub use ha::HaResource;

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Block, Diagnostics, Provider, Resource, Schema};

pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/shardform/pgpool";

#[derive(Default)]
pub struct PgpoolProvider;

pub fn provider() -> PgpoolProvider {
    PgpoolProvider
}

#[async_trait]
impl Provider for PgpoolProvider {
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Highly available PostgreSQL node groups: repmgr replication behind Pgpool-II.",
            ),
        )
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(HaResource)]
    }

    async fn configure(&self, _config: &Value, _diags: &mut Diagnostics) {}
}
