//! The `pgpool_ha` schema and its attribute validators.

use std::path::Path;

use crate::cty::{Type, Value};
use crate::framework::validators::{int_between, one_of, port, NameLike, Validator};
use crate::framework::{timeouts, AttrPath, Attribute, Block, Diagnostics, NestedBlock, Schema};
use crate::kubernetes::names::{dns_label, dns_subdomain, is_dns1035_label, ImageReference, LabelMap};
use crate::kubernetes::quantity::PositiveSize;

use super::defaults;
use super::layout::{is_plain_path, MAX_BASE_DIR_LEN, MAX_PASSWORD_LEN, MAX_STANDBYS, PORTS_PER_GROUP};

pub const LOCAL: &str = "local";
pub const KUBERNETES: &str = "kubernetes";
pub const TARGETS: &[&str] = &[LOCAL, KUBERNETES];

/// `kubernetes.service_type` values: how the pgpool endpoint is exposed.
pub const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer"];

/// The longest group `name` of the kubernetes target: `NAME-nodes` is the
/// StatefulSet, whose pods carry a `controller-revision-hash` label of
/// `NAME-nodes-` and ten characters, at most 63.
pub const MAX_KUBERNETES_NAME_LEN: usize = 63 - "-nodes-".len() - 10;

/// `disable_load_balance_on_write` values pgpool 4.3 accepts.
pub const LB_ON_WRITE: &[&str] = &[
    "off",
    "transaction",
    "trans_transaction",
    "always",
    "dml_adaptive",
];

/// Settings the group itself owns on every node; a user value would break
/// the layout, replication or failover, so they have attributes of their own
/// or are not settable at all.
pub const RESERVED_SETTINGS: &[&str] = &[
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "hba_file",
    "ident_file",
    "config_file",
    "data_directory",
    "external_pid_file",
    "shared_preload_libraries",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    "hot_standby",
    "wal_log_hints",
    // pg_rewind (rejoining an old primary) needs it.
    "full_page_writes",
    "include",
    "include_if_exists",
    "include_dir",
];

fn group_name() -> NameLike {
    NameLike {
        max_len: 63,
        allowed: |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'),
        explain: "letters, digits, `_` and `-`",
    }
}

/// An absolute path of plain characters, short enough for socket paths.
struct BaseDir;

impl Validator for BaseDir {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        if !is_plain_path(Path::new(s)) {
            diags.error_at(
                path.clone(),
                "Invalid base directory",
                format!("{path} must be an absolute path of letters, digits, `/`, `.`, `_` and `-`, got {s:?}."),
            );
        } else if s.len() > MAX_BASE_DIR_LEN {
            diags.error_at(
                path.clone(),
                "Base directory path too long",
                format!(
                    "{path} is {} bytes long; at most {MAX_BASE_DIR_LEN} fit, because PostgreSQL's unix sockets live under it \
                     and a socket path is limited to 107 bytes.",
                    s.len()
                ),
            );
        }
    }
}

/// A PostgreSQL parameter name such as `work_mem` or `citus.shard_count`.
pub fn is_setting_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    name.len() <= 63 && part(first) && rest.len() <= 1 && rest.iter().all(|p| part(p))
}

struct PostgresqlSettings;

impl Validator for PostgresqlSettings {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Value::Map(settings) = value else { return };
        for (name, v) in settings {
            let at = path.key(name);
            if !is_setting_name(name) {
                diags.error_at(
                    at,
                    "Invalid setting name",
                    format!("{path} keys must be PostgreSQL parameter names (lower case letters, digits and `_`, optionally one `.` as in `citus.shard_count`), got {name:?}."),
                );
            } else if RESERVED_SETTINGS.contains(&name.as_str()) {
                diags.error_at(
                    at,
                    "Setting owned by the group",
                    format!("{name:?} is set by pgpool_ha itself on every node (ports, sockets, replication, preload libraries have attributes of their own); remove it from {path}."),
                );
            } else if v.as_str().is_some_and(|s| s.contains(['\n', '\r', '\0'])) {
                diags.error_at(
                    at,
                    "Invalid setting value",
                    format!("The value of {name:?} must be on one line."),
                );
            }
        }
    }
}

struct LibraryNames;

impl Validator for LibraryNames {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        for (i, lib) in value.as_elements().unwrap_or_default().iter().enumerate() {
            let Some(s) = lib.as_str() else { continue };
            if s.is_empty()
                || s.len() > 63
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                diags.error_at(
                    path.index(i),
                    "Invalid library name",
                    format!("{path}[{i}] must be a library name of letters, digits, `_` and `-` (as in `citus` or `pg_stat_statements`), got {s:?}."),
                );
            }
        }
    }
}

fn seconds(name: &'static str, what: &str, default: i64, min: i64, max: i64) -> Attribute {
    Attribute::optional(name, Type::Number)
        .describe(format!("{what} Defaults to `{default}`."))
        .validate(int_between(min, max))
        .default(Value::int(default))
}

fn pgpool_block() -> NestedBlock {
    use defaults::pgpool as d;
    let block = Block::new("Pgpool-II settings. Changing any of them restarts pgpool (a few seconds without the endpoint); the nodes keep running.")
        .attribute(
            Attribute::optional("load_balance_mode", Type::Bool)
                .describe(format!("Send read-only queries to standbys as well as the primary. Defaults to `{}`.", d::LOAD_BALANCE_MODE))
                .default(d::LOAD_BALANCE_MODE),
        )
        .attribute(
            Attribute::optional("disable_load_balance_on_write", Type::String)
                .describe(format!("When reads stop being balanced after a write: `off`, `transaction`, `trans_transaction`, `always` or `dml_adaptive`. Defaults to `{}`.", d::DISABLE_LOAD_BALANCE_ON_WRITE))
                .validate(one_of(LB_ON_WRITE))
                .default(d::DISABLE_LOAD_BALANCE_ON_WRITE),
        )
        .attribute(seconds("health_check_period", "Seconds between pgpool's health checks of each node; `0` turns them off (a dead node is then only noticed by repmgr).", d::HEALTH_CHECK_PERIOD, 0, 3600))
        .attribute(seconds("health_check_timeout", "Seconds a health check may take.", d::HEALTH_CHECK_TIMEOUT, 1, 3600))
        .attribute(seconds("health_check_max_retries", "Failed health checks retried before pgpool detaches a node.", d::HEALTH_CHECK_MAX_RETRIES, 0, 100))
        .attribute(seconds("sr_check_period", "Seconds between pgpool's streaming-replication delay checks.", d::SR_CHECK_PERIOD, 0, 3600))
        .attribute(seconds("num_init_children", "Pgpool child processes: the most concurrent client sessions.", d::NUM_INIT_CHILDREN, 1, 1000))
        .attribute(seconds("max_pool", "Cached backend connections per pgpool child. Every node needs `num_init_children * max_pool` connections to spare.", d::MAX_POOL, 1, 100));
    NestedBlock::single("pgpool_settings", block)
}

fn failover_block() -> NestedBlock {
    use defaults::failover as d;
    let block = Block::new("How quickly repmgrd declares the primary dead and promotes a standby: about `monitor_interval_secs + reconnect_attempts * reconnect_interval` seconds.")
        .attribute(seconds("monitor_interval_secs", "Seconds between repmgrd's checks of its upstream.", d::MONITOR_INTERVAL_SECS, 1, 600))
        .attribute(seconds("reconnect_attempts", "Reconnection attempts before the primary is considered dead.", d::RECONNECT_ATTEMPTS, 0, 100))
        .attribute(seconds("reconnect_interval", "Seconds between those attempts.", d::RECONNECT_INTERVAL, 1, 600))
        .attribute(
            Attribute::optional("rejoin_failed_primary", Type::Bool)
                .describe(format!(
                    "After a promotion the failed primary is always fenced: a `standby.signal` in its data directory \
                     makes any restart (by hand, or of the whole group) come up read-only, and a postmaster of it that \
                     still runs is stopped. With this on, the event hook then rewinds it (`repmgr node rejoin \
                     --force-rewind`) and rejoins it as a standby in the background, attached in pgpool once it streams, \
                     so a failover leaves a whole group and the next plan is empty. Off: it stays fenced and down for \
                     inspection, and the next plan shows its repair. Defaults to `{}`.",
                    d::REJOIN_FAILED_PRIMARY
                ))
                .default(d::REJOIN_FAILED_PRIMARY),
        );
    NestedBlock::single("failover_settings", block)
}

/// A connection value for the Citus block: not blank, one line of printable
/// characters (it lands in a shell script and a password file).
struct ConnectionText;

impl Validator for ConnectionText {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        if s.trim().is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
            diags.error_at(
                path.clone(),
                "Invalid value",
                format!("{path} must be one line of printable characters, 1 to 255 bytes long."),
            );
        }
    }
}

/// The superuser password: one line, short enough for pgpool's `pool_passwd`.
struct SuperuserPassword;

impl Validator for SuperuserPassword {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        let max = MAX_PASSWORD_LEN;
        if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
            // Never echo the value: it is a secret.
            diags.error_at(
                path.clone(),
                "Invalid password",
                format!("{path} must be 1 to {max} bytes of printable characters (pgpool keeps it in pool_passwd, whose fields are at most 128 bytes)."),
            );
        }
    }
}

fn citus_block() -> NestedBlock {
    use defaults::citus as d;
    let text = |name: &'static str, what: &str, default: &'static str| {
        Attribute::optional(name, Type::String)
            .describe(format!("{what} Defaults to `{default}`."))
            .validate(ConnectionText)
            .default(default)
    };
    let block = Block::new(
        "The group backs a Citus node (a worker). Citus is preloaded on every node (first in \
         `shared_preload_libraries`, `wal_level = logical`, TLS on with a self-signed certificate so the \
         coordinator's default `sslmode=require` reaches every node, not only the first primary). Register the \
         group in Citus by `primary_host` and `primary_port`, never by the pgpool endpoint.\n\n\
         When repmgr promotes a standby (`repmgrd_failover_promote`, `standby_promote`), the new primary repoints \
         the coordinator: `citus_update_node` for the `pg_dist_node` primary row that names another node of this \
         group, through `psql`, retried for about 30 seconds, logged to `pgpool/citus-failover.log` under \
         `base_dir`. It runs without Terraform; the node id stays, so `citus_cluster` sees the same worker at the \
         new address.",
    )
    .attribute(
        Attribute::required("coordinator_host", Type::String)
            .describe("Host name or address of the Citus coordinator, as the group's nodes reach it.")
            .validate(crate::framework::validators::host_name()),
    )
    .attribute(
        Attribute::optional("coordinator_port", Type::Number)
            .describe(format!("Port of the Citus coordinator. Defaults to `{}`.", d::COORDINATOR_PORT))
            .validate(port())
            .default(Value::int(d::COORDINATOR_PORT)),
    )
    .attribute(text("database", "Database on the coordinator that holds the Citus metadata.", d::DATABASE))
    .attribute(text("username", "Superuser on the coordinator that may call `citus_update_node`.", d::USERNAME))
    .attribute(
        Attribute::optional("password", Type::String)
            .describe("Password of `username`, when the coordinator asks for one. Kept in a password file (mode 0600) under `base_dir`, never on a command line.")
            .validate(ConnectionText)
            .sensitive(),
    )
    .attribute(
        Attribute::optional("password_wo", Type::String)
            .describe(
                "Write-only form of `password` (Terraform 1.11 and later): used the same way, never stored in plan \
                 or state. Change `password_wo_version` to make the provider rewrite it.",
            )
            .validate(ConnectionText)
            .write_only(),
    )
    .attribute(
        Attribute::optional("password_wo_version", Type::Number)
            .describe("Any number; a change makes apply take the current `password_wo`."),
    );
    NestedBlock::single("citus", block)
}

fn kubernetes_block() -> NestedBlock {
    use defaults::kubernetes as d;
    let block = Block::new(
        "Where and how the group runs with `target = \"kubernetes\"` (required then, refused otherwise). \
         The group becomes Kubernetes objects in `namespace`: a StatefulSet `NAME-nodes` of PostgreSQL + repmgr pods \
         (one per node slot, never two on one Kubernetes node) behind a headless Service, a Deployment \
         `NAME-pgpool` with the Service `NAME` as the endpoint, ConfigMaps with the group's configuration files and \
         scripts, a Secret with its passwords, and a PodDisruptionBudget. **In progress**: the objects are rendered \
         and validated, applying them is not implemented yet.",
    )
    .attribute(
        Attribute::required("namespace", Type::String)
            .describe("Namespace of every object of the group (it must exist).")
            .validate(dns_label("namespace"))
            .requires_replace(),
    )
    .attribute(
        Attribute::required("image", Type::String)
            .describe(
                "Container image of the nodes and of pgpool: `[registry[:port]/]path[:tag][@sha256:digest]`. It needs \
                 PostgreSQL 15, repmgr and Pgpool-II from Debian's packages and a `postgres` user of uid 999; \
                 `examples/images/pgpool-ha/Dockerfile` builds one. Nothing of a vendor's entrypoint is used.",
            )
            .validate(ImageReference),
    )
    .attribute(
        Attribute::optional("storage_class", Type::String)
            .describe(format!(
                "StorageClass of the nodes' volume claims (the StatefulSet's `volumeClaimTemplates`). Defaults to \
                 `{}` when `volume_claims` is not set; conflicts with `volume_claims`.",
                d::STORAGE_CLASS
            ))
            .validate(dns_subdomain("StorageClass name"))
            .requires_replace(),
    )
    .attribute(
        Attribute::optional("storage_size", Type::String)
            .describe(format!(
                "Size each node's volume claim requests, a Kubernetes quantity such as `20Gi`. Defaults to `{}` when \
                 `volume_claims` is not set; conflicts with `volume_claims` (those volumes have their own size).",
                d::STORAGE_SIZE
            ))
            .validate(PositiveSize),
    )
    .attribute(
        Attribute::optional("volume_claims", Type::list(Type::String))
            .describe(
                "Existing PersistentVolumeClaims, one per node slot (`standbys + 1`, slot 0 first), such as the \
                 `kubernetes_pvc` names of `longhorn_volume` resources, instead of volume claims made from \
                 `storage_class` and `storage_size`. Slot N's claim must be named `data-NAME-nodes-N`: the \
                 StatefulSet adopts a claim by that name.",
            )
            .validate(dns_subdomain("PersistentVolumeClaim name"))
            .requires_replace(),
    )
    .attribute(
        Attribute::optional("keep_volumes_on_destroy", Type::Bool)
            .describe(format!(
                "Keep the nodes' volume claims (and so their data) when the group is destroyed. Defaults to `{}`.",
                d::KEEP_VOLUMES_ON_DESTROY
            ))
            .default(d::KEEP_VOLUMES_ON_DESTROY),
    )
    .attribute(
        Attribute::optional("service_type", Type::String)
            .describe(format!(
                "Type of the endpoint Service `NAME`: `ClusterIP`, `NodePort` or `LoadBalancer`. Defaults to `{}`.",
                d::SERVICE_TYPE
            ))
            .validate(one_of(SERVICE_TYPES))
            .default(d::SERVICE_TYPE),
    )
    .attribute(
        Attribute::optional("node_selector", Type::map(Type::String))
            .describe("Labels a Kubernetes node must have to run the group's pods (`nodeSelector`).")
            .validate(LabelMap),
    );
    NestedBlock::single("kubernetes", block)
}

/// The rules between `target`, `base_dir`, `port_base`, `name` and the
/// `kubernetes` block, on the configuration as written (so that "set" means
/// set by the user, not a default). Values still unknown are left to apply.
pub fn validate_target(config: &Value, diags: &mut Diagnostics) {
    let target = match config.attr("target") {
        Value::Unknown => return,
        Value::String(s) => s.as_str(),
        _ => defaults::TARGET,
    };
    let set = |name: &str| !config.attr(name).is_null();
    let kubernetes = config.attr("kubernetes");
    if target == LOCAL {
        if !set("base_dir") {
            diags.error_at(
                AttrPath::root("base_dir"),
                "Missing base_dir",
                "The local target keeps every file of the group under base_dir: set it to an absolute directory, \
                 such as \"/var/lib/shardform/coordinator\".",
            );
        }
        if !kubernetes.is_null() {
            diags.error_at(
                AttrPath::root("kubernetes"),
                "kubernetes block without the kubernetes target",
                "The kubernetes block is only for target = \"kubernetes\": remove it, or set target = \"kubernetes\".",
            );
        }
        return;
    }
    if target != KUBERNETES {
        return;
    }
    for name in ["base_dir", "port_base"] {
        if set(name) {
            diags.error_at(
                AttrPath::root(name),
                format!("{name} is for the local target"),
                format!(
                    "With target = \"kubernetes\" the group's files and ports are inside its pods; remove {name}."
                ),
            );
        }
    }
    if let Some(name) = config.attr("name").as_str() {
        if !(is_dns1035_label(name) && name.len() <= MAX_KUBERNETES_NAME_LEN) {
            diags.error_at(
                AttrPath::root("name"),
                "Invalid name for the kubernetes target",
                format!(
                    "With target = \"kubernetes\" the name starts every object's name (NAME-nodes, NAME-pgpool, the Service NAME): \
                     it must be 1 to {MAX_KUBERNETES_NAME_LEN} lower case letters, digits and `-`, starting with a letter and \
                     ending with a letter or digit; got {name:?}."
                ),
            );
        }
    }
    if kubernetes.is_null() {
        diags.error_at(
            AttrPath::root("kubernetes"),
            "Missing kubernetes block",
            "target = \"kubernetes\" needs a kubernetes block with at least namespace and image.",
        );
        return;
    }
    let at = |name: &str| AttrPath::root("kubernetes").attr(name);
    let Some(claims) = kubernetes.attr("volume_claims").as_elements() else { return };
    for name in ["storage_class", "storage_size"] {
        if !kubernetes.attr(name).is_null() {
            diags.error_at(
                at(name),
                "Conflicting storage settings",
                format!(
                    "Set either volume_claims (existing claims, with their own class and size) or {name} (claims the \
                     StatefulSet makes), not both."
                ),
            );
        }
    }
    let nodes = match config.attr("standbys") {
        Value::Unknown => None,
        v => Some(v.as_i64().unwrap_or(defaults::STANDBYS) + 1),
    };
    if let Some(nodes) = nodes.filter(|n| *n != claims.len() as i64) {
        diags.error_at(
            at("volume_claims"),
            "One volume claim per node",
            format!(
                "volume_claims lists {} claims, but the group has {nodes} nodes (standbys + 1): name one claim per node slot, slot 0 first.",
                claims.len()
            ),
        );
    }
    let group = config.attr("name").as_str();
    for (i, claim) in claims.iter().enumerate() {
        if let Some(name) = claim.as_str() {
            let expected = group.map(|g| format!("data-{g}-nodes-{i}"));
            if expected.as_deref().is_some_and(|e| e != name) {
                diags.error_at(
                    at("volume_claims").index(i),
                    "Volume claim not named for its node",
                    format!(
                        "The StatefulSet adopts an existing claim of node slot {i} only by the name it would give it, {:?}; \
                         got {name:?}. Name the claim so (for a longhorn_volume, its kubernetes_pvc name).",
                        expected.unwrap_or_default()
                    ),
                );
                continue;
            }
            if claims[..i].iter().any(|c| c.as_str() == Some(name)) {
                diags.error_at(
                    at("volume_claims").index(i),
                    "Volume claim listed twice",
                    format!("{name:?} is listed more than once: each node needs a volume of its own."),
                );
            }
        }
    }
}

fn node_type() -> Type {
    Type::object([
        ("name", Type::String),
        ("host", Type::String),
        ("port", Type::Number),
        ("role", Type::String),
        ("status", Type::String),
        ("replication_delay_bytes", Type::Number),
    ])
}

pub fn schema() -> Schema {
    let block = Block::new(
        "One highly available PostgreSQL node group: a primary and `standbys` streaming replicas managed \
         by repmgr (repmgrd promotes a standby when the primary dies), with Pgpool-II in front for \
         read/write splitting. The `local` target runs every process on the machine running Terraform, \
         under `base_dir`, as the unprivileged `postgres` user when Terraform runs as root, detached from \
         Terraform so that Ctrl-C or the provider exiting never stops them.\n\n\
         A failover is not drift: the group is healthy with another primary. A node that is down, \
         detached in pgpool, not replicating, or an old primary that came back (`fenced`) is drift: the \
         plan shows `nodes` as known after apply, and apply repairs it (restart, `repmgr node rejoin \
         --force-rewind`, or a fresh clone; then `pcp_attach_node`).\n\n\
         **Destroy** stops every process of the group and deletes `base_dir`, and is refused while \
         `deletion_protection` is on.",
    )
    .attribute(Attribute::computed("id", Type::String).describe("The group's base directory (`local` target).").use_state_for_unknown())
    .attribute(
        Attribute::required("name", Type::String)
            .describe("A name for the group, used in logs and messages.")
            .validate(group_name()),
    )
    .attribute(
        Attribute::optional("target", Type::String)
            .describe(format!(
                "Where the group runs: `local` (processes on this machine, under `base_dir`) or `kubernetes` (Kubernetes \
                 objects, see the `kubernetes` block; **in progress**: a plan with it validates the configuration and \
                 then fails, since applying is not implemented yet). Defaults to `{}`.",
                defaults::TARGET
            ))
            .validate(one_of(TARGETS))
            .default(defaults::TARGET)
            .requires_replace(),
    )
    .attribute(
        Attribute::optional("base_dir", Type::String)
            .describe("Absolute directory holding every data directory, configuration file, socket and log of the group. Created when missing; it must be empty or hold this group. Required by the `local` target, refused by `kubernetes`.")
            .validate(BaseDir)
            .requires_replace(),
    )
    .attribute(
        Attribute::optional("standbys", Type::Number)
            .describe(format!("Number of standbys besides the primary, 0 to {MAX_STANDBYS}. Defaults to `{}`.", defaults::STANDBYS))
            .validate(int_between(0, MAX_STANDBYS as i64))
            .default(Value::int(defaults::STANDBYS)),
    )
    .attribute(
        Attribute::optional_computed("port_base", Type::Number)
            .describe(format!(
                "First of {} consecutive loopback ports: pgpool, pcp, then one per node slot. Chosen among free ports when omitted, and kept.",
                PORTS_PER_GROUP
            ))
            .validate(int_between(1024, 65535 - PORTS_PER_GROUP as i64 + 1))
            .use_state_for_unknown()
            .requires_replace(),
    )
    .attribute(
        Attribute::optional("postgresql_settings", Type::map(Type::String))
            .describe("PostgreSQL parameters written into every node's configuration file (outside the data directory, so failover, rejoin and re-clone keep them). Applied with a reload; a parameter that needs a restart (`pg_settings.pending_restart`) restarts the nodes that report it, standbys first, then the primary with repmgrd paused (no failover), as the plan warns.")
            .validate(PostgresqlSettings),
    )
    .attribute(
        Attribute::optional("preload_libraries", Type::list(Type::String))
            .describe("Libraries for `shared_preload_libraries` besides `repmgr` (always loaded). `citus` is put first, as Citus requires, and switches `wal_level` to `logical` and TLS on (as the `citus` block does).")
            .validate(LibraryNames),
    )
    .attribute(
        Attribute::optional("synchronous_replication", Type::Bool)
            .describe(format!("Acknowledge a commit only once a standby has it (`synchronous_standby_names = 'ANY 1 (...)'`), so no acknowledged write is lost on failover. Needs at least one standby. Defaults to `{}`.", defaults::SYNCHRONOUS_REPLICATION))
            .default(defaults::SYNCHRONOUS_REPLICATION),
    )
    .attribute(
        Attribute::optional("superuser_password", Type::String)
            .describe(
                "Password of the `postgres` superuser. When set, every TCP connection to a node or to the pgpool \
                 endpoint must authenticate with SCRAM (`scram-sha-256` in `pg_hba.conf`); pgpool authenticates \
                 `postgres` from its `pool_passwd` and asks other roles for their password over loopback. Unix \
                 sockets (directories of mode 0700) stay trusted: the provider, repmgr and replication use them, so \
                 changing or removing the password never interrupts replication. Stored in clear only in \
                 `pgpool/pool_passwd` (mode 0600) and as a SCRAM verifier in the database; never logged. Without it, \
                 TCP connections are trusted.",
            )
            .validate(SuperuserPassword)
            .sensitive(),
    )
    .attribute(
        Attribute::optional("superuser_password_wo", Type::String)
            .describe(
                "Write-only form of `superuser_password` (Terraform 1.11 and later): the same effect, but the value \
                 is never stored in plan or state. Terraform cannot see a change of a write-only value: change \
                 `superuser_password_wo_version` to make apply set the current one.",
            )
            .validate(SuperuserPassword)
            .write_only(),
    )
    .attribute(
        Attribute::optional("superuser_password_wo_version", Type::Number)
            .describe("Any number; a change makes apply set the current `superuser_password_wo`."),
    )
    .attribute(
        Attribute::optional("deletion_protection", Type::Bool)
            .describe(format!("Refuse to destroy the group (and delete its data). Defaults to `{}`.", defaults::DELETION_PROTECTION))
            .default(defaults::DELETION_PROTECTION),
    )
    .attribute(Attribute::computed("endpoint_host", Type::String).describe("Host of the pgpool endpoint applications connect to.").use_state_for_unknown())
    .attribute(Attribute::computed("endpoint_port", Type::Number).describe("Port of the pgpool endpoint.").use_state_for_unknown())
    .attribute(Attribute::computed("primary", Type::String).describe("Name of the node that is the primary now (changes on failover, which is not drift)."))
    .attribute(
        Attribute::computed("primary_host", Type::String)
            .describe("Direct host of the current primary (not pgpool): what Citus registers for the group."),
    )
    .attribute(
        Attribute::computed("primary_port", Type::Number).describe(
            "Direct port of the current primary; it changes on failover. Give it to `citus_cluster`'s worker `port`: after \
             a failover the group has already repointed `pg_dist_node` (see the `citus` block), so the next plan is empty. \
             While no node is primary it keeps the last primary's port.",
        ),
    )
    .attribute(Attribute::computed("pgpool_status", Type::String).describe("`up` when pgpool answers on the endpoint and agrees with repmgr on the primary, `wrong_primary` when it answers but names another primary, `checks_off` when an apply that restarted nodes did not get to turn its health checks on again, `down` when it does not answer."))
    .attribute(
        Attribute::computed("nodes", Type::list(node_type()))
            .describe("Every node: `name`, direct `host` and `port`, `role` (`primary`, `standby` or `unknown`), `status` (`up`, `down`, `detached` in pgpool, `not_replicating`, `unmonitored` when its repmgrd is not running or is left paused by an apply that did not finish, `fenced` for an old primary that came back) and `replication_delay_bytes` (on standbys)."),
    )
    .block(pgpool_block())
    .block(failover_block())
    .block(citus_block())
    .block(kubernetes_block())
    .block(timeouts::block(&["create", "update", "delete"]));
    Schema::new(0, block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names() {
        assert!(is_setting_name("work_mem"));
        assert!(is_setting_name("citus.shard_count"));
        assert!(!is_setting_name("Work_mem"));
        assert!(!is_setting_name("a.b.c"));
        assert!(!is_setting_name("x'; drop"));
        assert!(!is_setting_name(""));
    }

    #[test]
    fn reserved_and_bad_settings_are_reported_at_their_key() {
        let mut diags = Diagnostics::new();
        let value = Value::Map(
            [
                ("port".to_string(), Value::string("1")),
                ("bad name".to_string(), Value::string("1")),
                ("work_mem".to_string(), Value::string("64MB")),
            ]
            .into_iter()
            .collect(),
        );
        PostgresqlSettings.validate(&value, &AttrPath::root("postgresql_settings"), &mut diags);
        let paths: Vec<String> = diags
            .iter()
            .map(|d| d.path.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "postgresql_settings[\"bad name\"]",
                "postgresql_settings[\"port\"]"
            ]
        );
    }

    #[test]
    fn base_dir_must_be_plain_and_short() {
        let mut diags = Diagnostics::new();
        BaseDir.validate(
            &Value::string("/tmp/ok"),
            &AttrPath::root("base_dir"),
            &mut diags,
        );
        assert!(!diags.has_errors());
        BaseDir.validate(
            &Value::string(format!("/{}", "a".repeat(100))),
            &AttrPath::root("base_dir"),
            &mut diags,
        );
        BaseDir.validate(
            &Value::string("tmp/x"),
            &AttrPath::root("base_dir"),
            &mut diags,
        );
        assert_eq!(diags.iter().count(), 2);
    }

    fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn target_paths(config: &Value) -> Vec<String> {
        let mut diags = Diagnostics::new();
        validate_target(config, &mut diags);
        diags.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect()
    }

    fn kube(fields: Vec<(&str, Value)>) -> Value {
        let mut all = vec![("namespace", Value::string("db")), ("image", Value::string("pgpool-ha:15"))];
        all.extend(fields);
        object(all)
    }

    #[test]
    fn the_local_target_needs_base_dir_and_no_kubernetes_block() {
        assert!(target_paths(&object(vec![("base_dir", Value::string("/srv/g"))])).is_empty());
        assert_eq!(target_paths(&object(vec![])), ["base_dir"]);
        assert_eq!(
            target_paths(&object(vec![("target", Value::string("local")), ("kubernetes", kube(vec![]))])),
            ["base_dir", "kubernetes"]
        );
        // Unknown until apply: nothing to say yet.
        assert!(target_paths(&object(vec![("target", Value::Unknown)])).is_empty());
        assert!(target_paths(&object(vec![("base_dir", Value::Unknown)])).is_empty());
    }

    #[test]
    fn the_kubernetes_target_needs_its_block_and_refuses_local_settings() {
        let k8s = |fields: Vec<(&str, Value)>| {
            let mut all = vec![("target", Value::string("kubernetes")), ("name", Value::string("w1"))];
            all.extend(fields);
            object(all)
        };
        assert!(target_paths(&k8s(vec![("kubernetes", kube(vec![]))])).is_empty());
        assert_eq!(target_paths(&k8s(vec![])), ["kubernetes"]);
        assert_eq!(
            target_paths(&k8s(vec![("kubernetes", kube(vec![])), ("base_dir", Value::string("/x")), ("port_base", Value::int(7000))])),
            ["base_dir", "port_base"]
        );
        assert_eq!(target_paths(&k8s(vec![("kubernetes", kube(vec![])), ("name", Value::string("Worker_1"))])), ["name"]);
        let long = "a".repeat(MAX_KUBERNETES_NAME_LEN + 1);
        assert_eq!(target_paths(&k8s(vec![("kubernetes", kube(vec![])), ("name", Value::string(long))])), ["name"]);
    }

    #[test]
    fn volume_claims_one_per_node_and_not_with_a_storage_class() {
        let claims = |names: &[&str]| Value::List(names.iter().map(|n| Value::string(*n)).collect());
        let config = |standbys: Value, block: Value| {
            object(vec![("target", Value::string("kubernetes")), ("name", Value::string("w1")), ("standbys", standbys), ("kubernetes", block)])
        };
        let (a, b, c) = ("data-w1-nodes-0", "data-w1-nodes-1", "data-w1-nodes-2");
        assert!(target_paths(&config(Value::int(1), kube(vec![("volume_claims", claims(&[a, b]))]))).is_empty());
        // Default standbys (2): three claims.
        assert!(target_paths(&config(Value::Null, kube(vec![("volume_claims", claims(&[a, b, c]))]))).is_empty());
        assert_eq!(target_paths(&config(Value::int(2), kube(vec![("volume_claims", claims(&[a, b]))]))), ["kubernetes.volume_claims"]);
        assert!(target_paths(&config(Value::Unknown, kube(vec![("volume_claims", claims(&[a]))]))).is_empty());
        assert_eq!(
            target_paths(&config(Value::int(1), kube(vec![("volume_claims", claims(&[a, a]))]))),
            ["kubernetes.volume_claims[1]"]
        );
        assert_eq!(
            target_paths(&config(Value::int(1), kube(vec![("volume_claims", claims(&[a, "pvc-1"]))]))),
            ["kubernetes.volume_claims[1]"]
        );
        assert_eq!(
            target_paths(&config(
                Value::int(1),
                kube(vec![("volume_claims", claims(&[a, b])), ("storage_class", Value::string("fast")), ("storage_size", Value::string("1Gi"))])
            )),
            ["kubernetes.storage_class", "kubernetes.storage_size"]
        );
    }

    #[test]
    fn kubernetes_attributes_are_validated_at_their_paths() {
        let schema = schema();
        let config = object(vec![
            ("name", Value::string("w1")),
            ("target", Value::string("kubernetes")),
            (
                "kubernetes",
                object(vec![
                    ("namespace", Value::string("Not_A_Label")),
                    ("image", Value::string("Bad Image")),
                    ("storage_class", Value::string("Fast SSD")),
                    ("storage_size", Value::string("-5Gi")),
                    ("service_type", Value::string("ExternalName")),
                    ("node_selector", Value::Map([("disk".to_string(), Value::string("-ssd"))].into_iter().collect())),
                ]),
            ),
        ]);
        let mut diags = Diagnostics::new();
        crate::framework::validate_block(&schema.block, &config, &AttrPath::default(), &mut diags);
        let mut paths: Vec<String> = diags.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "kubernetes.image",
                "kubernetes.namespace",
                "kubernetes.node_selector[\"disk\"]",
                "kubernetes.service_type",
                "kubernetes.storage_class",
                "kubernetes.storage_size",
            ]
        );
        assert!(TARGETS.contains(&"kubernetes"));
    }
}
