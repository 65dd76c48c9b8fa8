//! The `shardform/pgpool` provider: highly available PostgreSQL node groups.
//!
//! The provider block takes the Kubernetes connection settings of
//! [`crate::kubernetes::connection`], all optional: only groups with
//! `target = "kubernetes"` use them, and the client is made on first use by
//! such a group, so configurations of local groups need no provider block.

mod ha;

pub use ha::{kubernetes_objects, HaResource};

use std::sync::Arc;

use async_trait::async_trait;

use crate::cty::Value;
use crate::framework::{Block, Diagnostics, Provider, Resource, Schema};
use crate::kubernetes::connection::{self as kube_connection, ConnectError, Connection};

pub const REGISTRY_ADDRESS: &str = "registry.terraform.io/shardform/pgpool";

/// What the kubernetes target needs the API server to serve.
pub const REQUIRED: kube_connection::Required = kube_connection::Required {
    group_version: "apps/v1",
    plural: "statefulsets",
    missing: apps_missing,
    grant: "Grant the provider's user get, list, patch and delete on ConfigMaps, Secrets, Services, \
            StatefulSets, Deployments, PodDisruptionBudgets and PersistentVolumeClaims, and create on \
            pods/exec, in the namespaces of the groups.",
};

fn apps_missing(url: &str) -> ConnectError {
    ConnectError::new(
        "StatefulSets are not served",
        format!("The API server at {url} does not serve apps/v1 StatefulSets, which the kubernetes target of pgpool_ha needs."),
    )
}

pub struct PgpoolProvider {
    connection: Arc<Connection>,
}

pub fn provider() -> PgpoolProvider {
    PgpoolProvider {
        connection: Arc::new(Connection::new(REQUIRED)),
    }
}

#[async_trait]
impl Provider for PgpoolProvider {
    fn schema(&self) -> Schema {
        let mut block = Block::new(
            "Highly available PostgreSQL node groups: repmgr replication behind Pgpool-II. The \
             provider block is only for groups with `target = \"kubernetes\"`: how to reach the \
             Kubernetes API server, the same settings as the `shardform/longhorn` provider's (a \
             kubeconfig file and context, `host` and credentials given directly, or, with nothing \
             set, the pod's service account). Groups of the `local` target need no provider block.",
        );
        block.attributes = kube_connection::attributes();
        Schema::new(0, block)
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(HaResource::new(self.connection.clone()))]
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        kube_connection::validate(config, diags);
    }

    async fn configure(&self, config: &Value, _diags: &mut Diagnostics) {
        // No connection yet: it is made on first use by a kubernetes-target
        // group, so local groups never need a cluster, and values unknown at
        // plan time are planned, not rejected.
        self.connection.set(config);
    }
}
