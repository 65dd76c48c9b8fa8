//! The Kubernetes objects this provider touches. Requests go through the
//! shared helpers of [`crate::kubernetes::api`] (the one retry rule, error
//! texts), re-exported here; the field manager is this provider's own.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;

use crate::kubernetes::api::FieldManager;
pub use crate::kubernetes::api::{explain, get_opt, is_not_found, is_transient, retrying};

/// The field manager of every server-side apply this provider makes.
pub const FIELD_MANAGER: FieldManager = FieldManager("shardform-longhorn");
pub const FINALIZER: &str = "longhorn.io";
pub const CSI_DRIVER: &str = "driver.longhorn.io";

pub fn volume_resource() -> ApiResource {
    ApiResource {
        group: "longhorn.io".into(),
        version: "v1beta2".into(),
        api_version: "longhorn.io/v1beta2".into(),
        kind: "Volume".into(),
        plural: "volumes".into(),
    }
}

pub fn volumes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &volume_resource())
}
