//! Every default of `pgpool_ha`, written once: the schema declares them
//! (its `default` values and the "Defaults to" texts of the docs) and the
//! typed model falls back to them for a value that lacks an attribute (a
//! null object, an old state). Nothing else spells a default out.

use std::time::Duration;

/// `target`: where the group runs.
pub const TARGET: &str = "local";
/// `standbys`: streaming replicas besides the primary.
pub const STANDBYS: i64 = 2;
/// `synchronous_replication`.
pub const SYNCHRONOUS_REPLICATION: bool = false;
/// `deletion_protection`.
pub const DELETION_PROTECTION: bool = true;
/// Each of `create`, `update` and `delete` in the `timeouts` block.
pub const TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The `pgpool_settings` block.
pub mod pgpool {
    pub const LOAD_BALANCE_MODE: bool = true;
    pub const DISABLE_LOAD_BALANCE_ON_WRITE: &str = "transaction";
    pub const HEALTH_CHECK_PERIOD: i64 = 5;
    pub const HEALTH_CHECK_TIMEOUT: i64 = 10;
    pub const HEALTH_CHECK_MAX_RETRIES: i64 = 1;
    pub const SR_CHECK_PERIOD: i64 = 5;
    pub const NUM_INIT_CHILDREN: i64 = 16;
    pub const MAX_POOL: i64 = 2;
}

/// The `failover_settings` block.
pub mod failover {
    pub const MONITOR_INTERVAL_SECS: i64 = 2;
    pub const RECONNECT_ATTEMPTS: i64 = 3;
    pub const RECONNECT_INTERVAL: i64 = 2;
    pub const REJOIN_FAILED_PRIMARY: bool = true;
}

/// The `citus` block.
pub mod citus {
    pub const COORDINATOR_PORT: i64 = 5432;
    pub const DATABASE: &str = "postgres";
    pub const USERNAME: &str = "postgres";
}

/// The `kubernetes` block (target `kubernetes`).
pub mod kubernetes {
    /// `storage_class` of the volumeClaimTemplates, when `volume_claims` is not set.
    pub const STORAGE_CLASS: &str = "longhorn";
    /// `storage_size` of each node's volume claim, when `volume_claims` is not set.
    pub const STORAGE_SIZE: &str = "10Gi";
    pub const KEEP_VOLUMES_ON_DESTROY: bool = true;
    pub const SERVICE_TYPE: &str = "ClusterIP";
}
