//! The group a planned value asks for, as typed Rust.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cty::Value;
use crate::framework::timeouts;
use crate::sql::Secret;

use super::defaults;
use super::layout::{Layout, MAX_STANDBYS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpoolSettings {
    pub load_balance_mode: bool,
    pub disable_load_balance_on_write: String,
    pub health_check_period: i64,
    pub health_check_timeout: i64,
    pub health_check_max_retries: i64,
    pub sr_check_period: i64,
    pub num_init_children: i64,
    pub max_pool: i64,
}

impl PgpoolSettings {
    fn from_value(block: &Value) -> Self {
        use defaults::pgpool as d;
        let int = |name: &str, default: i64| block.attr(name).as_i64().unwrap_or(default);
        PgpoolSettings {
            load_balance_mode: block.attr("load_balance_mode").as_bool().unwrap_or(d::LOAD_BALANCE_MODE),
            disable_load_balance_on_write: block
                .attr("disable_load_balance_on_write")
                .as_str()
                .unwrap_or(d::DISABLE_LOAD_BALANCE_ON_WRITE)
                .to_string(),
            health_check_period: int("health_check_period", d::HEALTH_CHECK_PERIOD),
            health_check_timeout: int("health_check_timeout", d::HEALTH_CHECK_TIMEOUT),
            health_check_max_retries: int("health_check_max_retries", d::HEALTH_CHECK_MAX_RETRIES),
            sr_check_period: int("sr_check_period", d::SR_CHECK_PERIOD),
            num_init_children: int("num_init_children", d::NUM_INIT_CHILDREN),
            max_pool: int("max_pool", d::MAX_POOL),
        }
    }
}

/// How quickly repmgrd notices a dead primary and fails over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSettings {
    pub monitor_interval_secs: i64,
    pub reconnect_attempts: i64,
    pub reconnect_interval: i64,
    /// Rewind and rejoin the fenced old primary right after a promotion.
    pub rejoin_failed_primary: bool,
}

impl FailoverSettings {
    fn from_value(block: &Value) -> Self {
        use defaults::failover as d;
        let int = |name: &str, default: i64| block.attr(name).as_i64().unwrap_or(default);
        FailoverSettings {
            monitor_interval_secs: int("monitor_interval_secs", d::MONITOR_INTERVAL_SECS),
            reconnect_attempts: int("reconnect_attempts", d::RECONNECT_ATTEMPTS),
            reconnect_interval: int("reconnect_interval", d::RECONNECT_INTERVAL),
            rejoin_failed_primary: block
                .attr("rejoin_failed_primary")
                .as_bool()
                .unwrap_or(d::REJOIN_FAILED_PRIMARY),
        }
    }
}

/// The Citus node the group backs (the `citus` block): where the coordinator
/// is, so a promotion can repoint its `pg_dist_node` without Terraform.
#[derive(Clone, PartialEq, Eq)]
pub struct CitusSpec {
    pub coordinator_host: String,
    pub coordinator_port: u16,
    pub database: String,
    pub username: String,
    pub password: Option<String>,
}

/// `NAME`, or else its write-only form `NAME_wo` (present only at apply).
fn secret_attr<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value
        .attr(name)
        .as_str()
        .or_else(|| value.attr(&format!("{name}_wo")).as_str())
}

impl CitusSpec {
    fn from_value(block: &Value) -> Option<Self> {
        if block.is_null() || block.is_unknown() {
            return None;
        }
        use defaults::citus as d;
        let text =
            |name: &str, default: &str| block.attr(name).as_str().unwrap_or(default).to_string();
        Some(CitusSpec {
            coordinator_host: text("coordinator_host", ""),
            coordinator_port: block
                .attr("coordinator_port")
                .as_i64()
                .unwrap_or(d::COORDINATOR_PORT) as u16,
            database: text("database", d::DATABASE),
            username: text("username", d::USERNAME),
            // The write-only form arrives here at apply (from configuration).
            password: secret_attr(block, "password").map(str::to_string),
        })
    }
}

/// Never prints the password.
impl std::fmt::Debug for CitusSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitusSpec")
            .field("coordinator_host", &self.coordinator_host)
            .field("coordinator_port", &self.coordinator_port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(sensitive)"))
            .finish()
    }
}

/// Where the group runs (`target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Local,
    Kubernetes,
}

/// Where the nodes' data volumes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Claims the StatefulSet makes (`volumeClaimTemplates`).
    Template { storage_class: String, size: String },
    /// Existing PersistentVolumeClaims, one per node slot, slot 0 first.
    Claims(Vec<String>),
}

/// The `kubernetes` block, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSpec {
    pub namespace: String,
    pub image: String,
    pub storage: Storage,
    pub keep_volumes_on_destroy: bool,
    pub service_type: String,
    pub node_selector: BTreeMap<String, String>,
}

impl KubernetesSpec {
    fn from_value(block: &Value) -> Option<Self> {
        if block.is_null() || block.is_unknown() {
            return None;
        }
        use defaults::kubernetes as d;
        let text = |name: &str, default: &str| block.attr(name).as_str().unwrap_or(default).to_string();
        let claims: Vec<String> = block
            .attr("volume_claims")
            .as_elements()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let storage = if block.attr("volume_claims").is_null() {
            Storage::Template {
                storage_class: text("storage_class", d::STORAGE_CLASS),
                size: text("storage_size", d::STORAGE_SIZE),
            }
        } else {
            Storage::Claims(claims)
        };
        Some(KubernetesSpec {
            namespace: text("namespace", ""),
            image: text("image", ""),
            storage,
            keep_volumes_on_destroy: block
                .attr("keep_volumes_on_destroy")
                .as_bool()
                .unwrap_or(d::KEEP_VOLUMES_ON_DESTROY),
            service_type: text("service_type", d::SERVICE_TYPE),
            node_selector: string_map(block.attr("node_selector")),
        })
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    match value {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The group a planned (or prior) value describes. `port_base` is `None`
/// only before create has chosen it.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub target: TargetKind,
    /// Set with the kubernetes target.
    pub kubernetes: Option<KubernetesSpec>,
    pub base_dir: PathBuf,
    pub port_base: Option<u16>,
    pub standbys: usize,
    pub postgresql_settings: BTreeMap<String, String>,
    pub preload_libraries: Vec<String>,
    pub synchronous_replication: bool,
    pub pgpool: PgpoolSettings,
    pub failover: FailoverSettings,
    pub deletion_protection: bool,
    /// Set when the group backs a Citus node.
    pub citus: Option<CitusSpec>,
    /// The `postgres` role's password; TCP connections need it when set.
    pub superuser_password: Option<Secret>,
    /// The value's configurable, non-sensitive attributes, saved for import.
    pub configuration: Value,
}

impl GroupSpec {
    pub fn from_value(value: &Value) -> GroupSpec {
        let settings = string_map(value.attr("postgresql_settings"));
        let target = match value.attr("target").as_str().unwrap_or(defaults::TARGET) {
            super::schema::KUBERNETES => TargetKind::Kubernetes,
            _ => TargetKind::Local,
        };
        let preload = value
            .attr("preload_libraries")
            .as_elements()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        GroupSpec {
            name: value.attr("name").as_str().unwrap_or_default().to_string(),
            target,
            kubernetes: KubernetesSpec::from_value(value.attr("kubernetes")),
            base_dir: PathBuf::from(value.attr("base_dir").as_str().unwrap_or_default()),
            port_base: value.attr("port_base").as_i64().map(|p| p as u16),
            standbys: standbys(value),
            postgresql_settings: settings,
            preload_libraries: preload,
            synchronous_replication: value
                .attr("synchronous_replication")
                .as_bool()
                .unwrap_or(defaults::SYNCHRONOUS_REPLICATION),
            pgpool: PgpoolSettings::from_value(value.attr("pgpool_settings")),
            failover: FailoverSettings::from_value(value.attr("failover_settings")),
            deletion_protection: value
                .attr("deletion_protection")
                .as_bool()
                .unwrap_or(defaults::DELETION_PROTECTION),
            citus: CitusSpec::from_value(value.attr("citus")),
            superuser_password: secret_attr(value, "superuser_password").map(Secret::new),
            configuration: super::configuration::configuration(value),
        }
    }

    /// The layout; only meaningful once `port_base` is known.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.base_dir, self.port_base.unwrap_or(0))
    }

    /// Node slots the group should have: the primary's and one per standby.
    pub fn slots(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.standbys
    }

    /// `shared_preload_libraries`: citus first (it insists), then the
    /// user's others, then repmgr (repmgrd needs it).
    pub fn shared_preload_libraries(&self) -> Vec<String> {
        let mut libs: Vec<String> = Vec::new();
        if self.uses_citus() {
            libs.push("citus".into());
        }
        for lib in &self.preload_libraries {
            if !libs.contains(lib) && lib != "repmgr" {
                libs.push(lib.clone());
            }
        }
        libs.push("repmgr".into());
        libs
    }

    /// Citus runs on the nodes: preloaded by name, or the group backs a Citus node.
    pub fn uses_citus(&self) -> bool {
        self.citus.is_some() || self.preload_libraries.iter().any(|l| l == "citus")
    }
}

/// `standbys` of a resource value (the default when it has none), within
/// what a group may have.
pub fn standbys(value: &Value) -> usize {
    value
        .attr("standbys")
        .as_i64()
        .unwrap_or(defaults::STANDBYS)
        .clamp(0, MAX_STANDBYS as i64) as usize
}

pub fn timeout(value: &Value, operation: &str) -> Duration {
    timeouts::get(value, operation, defaults::TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citus_goes_first_and_repmgr_last() {
        let mut spec = GroupSpec::from_value(&Value::Null);
        spec.preload_libraries = vec!["pg_stat_statements".into(), "citus".into(), "repmgr".into()];
        assert_eq!(
            spec.shared_preload_libraries(),
            ["citus", "pg_stat_statements", "repmgr"]
        );
    }

    #[test]
    fn a_citus_block_preloads_citus_and_hides_its_password() {
        let mut spec = GroupSpec::from_value(&Value::Null);
        assert!(spec.citus.is_none() && !spec.uses_citus());
        spec.citus = CitusSpec::from_value(&Value::Object(
            [
                ("coordinator_host".to_string(), Value::string("10.0.0.1")),
                ("password".to_string(), Value::string("s3cret")),
            ]
            .into_iter()
            .collect(),
        ));
        let citus = spec.citus.as_ref().unwrap();
        assert_eq!(
            (
                citus.coordinator_port,
                citus.database.as_str(),
                citus.username.as_str()
            ),
            (5432, "postgres", "postgres")
        );
        assert_eq!(spec.shared_preload_libraries(), ["citus", "repmgr"]);
        assert!(!format!("{spec:?}").contains("s3cret"));
    }

    #[test]
    fn write_only_passwords_are_used_like_the_plain_ones() {
        let object = |fields: Vec<(&str, Value)>| {
            Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let value = object(vec![
            ("superuser_password_wo", Value::string("su-wo")),
            ("citus", object(vec![("coordinator_host", Value::string("c")), ("password_wo", Value::string("c-wo"))])),
        ]);
        let spec = GroupSpec::from_value(&value);
        assert_eq!(spec.superuser_password.as_ref().map(|s| s.expose()), Some("su-wo"));
        assert_eq!(spec.citus.unwrap().password.as_deref(), Some("c-wo"));
    }

    #[test]
    fn the_kubernetes_block_with_its_defaults() {
        let object = |fields: Vec<(&str, Value)>| {
            Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let spec = GroupSpec::from_value(&object(vec![
            ("name", Value::string("w1")),
            ("target", Value::string("kubernetes")),
            ("kubernetes", object(vec![("namespace", Value::string("db")), ("image", Value::string("r.example/pgpool-ha:15"))])),
        ]));
        assert_eq!(spec.target, TargetKind::Kubernetes);
        let k = spec.kubernetes.unwrap();
        assert_eq!((k.namespace.as_str(), k.image.as_str()), ("db", "r.example/pgpool-ha:15"));
        assert_eq!(k.storage, Storage::Template { storage_class: "longhorn".into(), size: "10Gi".into() });
        assert!(k.keep_volumes_on_destroy);
        assert_eq!(k.service_type, "ClusterIP");
        assert!(k.node_selector.is_empty());

        let spec = GroupSpec::from_value(&object(vec![
            ("target", Value::string("kubernetes")),
            ("kubernetes", object(vec![
                ("volume_claims", Value::List(vec![Value::string("a"), Value::string("b")])),
                ("keep_volumes_on_destroy", Value::Bool(false)),
                ("service_type", Value::string("LoadBalancer")),
                ("node_selector", Value::Map([("disk".to_string(), Value::string("ssd"))].into_iter().collect())),
            ])),
        ]));
        let k = spec.kubernetes.unwrap();
        assert_eq!(k.storage, Storage::Claims(vec!["a".into(), "b".into()]));
        assert!(!k.keep_volumes_on_destroy);
        assert_eq!(k.service_type, "LoadBalancer");
        assert_eq!(k.node_selector["disk"], "ssd");
    }

    #[test]
    fn defaults_when_blocks_are_absent() {
        let spec = GroupSpec::from_value(&Value::Null);
        assert_eq!(spec.standbys, 2);
        assert!(spec.deletion_protection);
        assert_eq!(spec.pgpool.disable_load_balance_on_write, "transaction");
        assert_eq!(spec.slots().count(), 3);
        assert_eq!(spec.target, TargetKind::Local);
        assert!(spec.kubernetes.is_none());
    }
}
