//! Every object of a group with `target = "kubernetes"`, as the JSON sent
//! by server-side apply. Pure functions of the typed model (`GroupSpec`
//! with its `kubernetes` block) and the configuration files of `render`,
//! which both targets share.
//!
//! ```text
//! Secret      NAME-passwords   superuser-password, pgpass, pool_passwd, pcp-password, citus.pgpass
//! ConfigMap   NAME-config      postgresql.node.conf, pg_hba.conf, repmgr-N.conf (one per ordinal),
//!                              pgpool.conf, pool_hba.conf
//! ConfigMap   NAME-scripts     node-entrypoint.sh, pgpool-entrypoint.sh, event-hook.sh
//! Service     NAME-nodes       headless, publishNotReadyAddresses: every pod by name from the start
//! StatefulSet NAME-nodes       standbys + 1 PostgreSQL + repmgr pods, never two on one node
//! PDB         NAME-nodes       maxUnavailable 1
//! Deployment  NAME-pgpool      one pgpool
//! Service     NAME-pgpool      ClusterIP: pgpool's PCP port, for the nodes' event hook
//! Service     NAME             the endpoint (service_type)
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::pgpool::ha::model::{GroupSpec, KubernetesSpec, Storage};
use crate::pgpool::ha::render::{
    self, escape_field, group_settings, pgpool_conf_at, pool_hba, pool_passwd, repmgr_conf_at, Backend,
    PgpoolPlace, RepmgrPlace, REPMGR_DB, SUPERUSER,
};
use crate::sql::Secret;

/// PostgreSQL's port in every node pod (each pod has its own address).
pub const POSTGRES_PORT: u16 = 5432;
/// pgpool's port in its pod; the endpoint Service maps 5432 to it.
pub const PGPOOL_PORT: u16 = 9999;
pub const PCP_PORT: u16 = 9898;
/// The `postgres` user of the image.
pub const UID: i64 = 999;

pub const CONFIG_DIR: &str = "/shardform/config";
pub const SCRIPTS_DIR: &str = "/shardform/scripts";
pub const SECRETS_DIR: &str = "/shardform/secrets";
/// Writable scratch space of each pod (sockets, copies of private files, logs).
pub const RUN_DIR: &str = "/shardform/run";
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// PGDATA is a directory below the volume's root, which may hold `lost+found`.
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

const NODE_ENTRYPOINT: &str = include_str!("node-entrypoint.sh");
const PGPOOL_ENTRYPOINT: &str = include_str!("pgpool-entrypoint.sh");
const EVENT_HOOK: &str = include_str!("event-hook.sh");

/// Every object of a group, in the order they are applied (what a pod
/// mounts exists before the pod).
#[derive(Debug, Clone)]
pub struct GroupObjects {
    pub objects: Vec<Json>,
}

impl GroupObjects {
    /// The object of `kind` named `name`.
    #[cfg(test)]
    pub fn get(&self, kind: &str, name: &str) -> Option<&Json> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }
}

struct Names<'a> {
    group: &'a str,
    namespace: &'a str,
}

impl Names<'_> {
    fn nodes(&self) -> String {
        format!("{}-nodes", self.group)
    }
    fn pgpool(&self) -> String {
        format!("{}-pgpool", self.group)
    }
    /// A node pod's DNS name under the headless Service.
    fn node_host(&self, ordinal: usize) -> String {
        format!("{}-nodes-{ordinal}.{}-nodes.{}.svc", self.group, self.group, self.namespace)
    }
}

/// The labels of every object of a group's `component` (`node` or `pgpool`).
pub fn labels(group: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(group, component);
    labels.insert("app.kubernetes.io/managed-by".into(), "shardform".into());
    labels
}

/// The labels that select a component's pods.
pub fn selector(group: &str, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "pgpool-ha"),
        ("app.kubernetes.io/instance", group),
        ("app.kubernetes.io/component", component),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn meta(names: &Names, name: String, component: &str) -> Json {
    json!({ "name": name, "namespace": names.namespace, "labels": labels(names.group, component) })
}

/// Renders every object of `spec`, which must have the kubernetes block.
/// `pcp_password` is the group's PCP password (kept by the caller).
pub fn render(spec: &GroupSpec, pcp_password: &Secret) -> Result<GroupObjects, String> {
    let k = spec
        .kubernetes
        .as_ref()
        .ok_or_else(|| "the group has no kubernetes block".to_string())?;
    let names = Names { group: &spec.name, namespace: &k.namespace };
    let objects = vec![
        secret(spec, &names, pcp_password),
        config_map(spec, &names),
        scripts(&names),
        headless_service(&names),
        stateful_set(spec, k, &names),
        disruption_budget(&names),
        pgpool_deployment(k, &names),
        pcp_service(&names),
        endpoint_service(k, &names),
    ];
    Ok(GroupObjects { objects })
}

fn secret(spec: &GroupSpec, names: &Names, pcp_password: &Secret) -> Json {
    let mut data = BTreeMap::new();
    data.insert("pcp-password".to_string(), pcp_password.expose().to_string());
    data.insert(
        "pool_passwd".to_string(),
        spec.superuser_password.as_ref().map(pool_passwd).unwrap_or_default(),
    );
    if let Some(password) = &spec.superuser_password {
        data.insert("superuser-password".into(), password.expose().to_string());
        // Cloning and rewinding over TCP, from pod to pod.
        data.insert("pgpass".into(), format!("*:*:*:{SUPERUSER}:{}\n", escape_field(password.expose())));
    }
    if let Some(pgpass) = spec.citus.as_ref().and_then(render::citus_pgpass) {
        data.insert("citus.pgpass".into(), pgpass);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(names, format!("{}-passwords", names.group), "node"),
        "type": "Opaque",
        "stringData": data,
    })
}

/// `pg_hba.conf` in pods: unix sockets trusted (the pod's own processes),
/// TCP from other pods (replication, pgpool) trusted without a
/// `superuser_password` and SCRAM with one, as on the local target.
pub fn pg_hba(spec: &GroupSpec) -> String {
    let tcp = if spec.superuser_password.is_some() { "scram-sha-256" } else { "trust" };
    format!(
        "# Written by shardform (pgpool_ha, kubernetes target).\n\
         local all all trust\n\
         local replication all trust\n\
         host all all 0.0.0.0/0 {tcp}\n\
         host replication all 0.0.0.0/0 {tcp}\n\
         host all all ::/0 {tcp}\n\
         host replication all ::/0 {tcp}\n"
    )
}

/// `postgresql.node.conf`: the group's settings (shared with the local
/// target), then what every pod has; nothing differs between ordinals.
pub fn node_conf(spec: &GroupSpec) -> String {
    let tls = (format!("{SECRETS_DIR}/tls.crt"), format!("{SECRETS_DIR}/tls.key"));
    format!(
        "# Written by shardform (pgpool_ha, kubernetes target); a change is applied by the group.\n\n{}\n\
         # This node (every pod alike)\n\
         listen_addresses = '*'\n\
         port = {POSTGRES_PORT}\n\
         unix_socket_directories = '{RUN_DIR}'\n\
         hba_file = '{CONFIG_DIR}/pg_hba.conf'\n\
         cluster_name = '{}'\n",
        group_settings(spec, &tls),
        spec.name
    )
}

fn repmgr_place(names: &Names, ordinal: usize) -> RepmgrPlace {
    RepmgrPlace {
        slot: ordinal,
        name: crate::pgpool::ha::layout::node_name(ordinal),
        conf: format!("{RUN_DIR}/repmgr.conf"),
        data: PGDATA.into(),
        postgres_log: format!("{RUN_DIR}/postgres.log"),
        conninfo: format!(
            "host={} port={POSTGRES_PORT} user={SUPERUSER} dbname={REPMGR_DB} connect_timeout=2",
            names.node_host(ordinal)
        ),
        repmgrd_pid: format!("{RUN_DIR}/repmgrd.pid"),
        repmgrd_log: format!("{RUN_DIR}/repmgrd.log"),
        event_script: format!("{SCRIPTS_DIR}/event-hook.sh"),
    }
}

fn pgpool_place(spec: &GroupSpec, names: &Names) -> PgpoolPlace {
    PgpoolPlace {
        listen: "*".into(),
        port: PGPOOL_PORT,
        pcp_port: PCP_PORT,
        socket_dir: RUN_DIR.into(),
        pid: format!("{RUN_DIR}/pgpool.pid"),
        logdir: format!("{RUN_DIR}/log"),
        pool_passwd: format!("{RUN_DIR}/pool_passwd"),
        backends: spec
            .slots()
            .map(|i| Backend {
                host: names.node_host(i),
                port: POSTGRES_PORT,
                data_dir: PGDATA.into(),
                name: crate::pgpool::ha::layout::node_name(i),
            })
            .collect(),
    }
}

fn config_map(spec: &GroupSpec, names: &Names) -> Json {
    let mut data = BTreeMap::new();
    data.insert("postgresql.node.conf".to_string(), node_conf(spec));
    data.insert("pg_hba.conf".to_string(), pg_hba(spec));
    for ordinal in spec.slots() {
        data.insert(format!("repmgr-{ordinal}.conf"), repmgr_conf_at(spec, &repmgr_place(names, ordinal)));
    }
    data.insert("pgpool.conf".to_string(), pgpool_conf_at(spec, &pgpool_place(spec, names)));
    data.insert("pool_hba.conf".to_string(), pool_hba());
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(names, format!("{}-config", names.group), "node"),
        "data": data,
    })
}

fn scripts(names: &Names) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(names, format!("{}-scripts", names.group), "node"),
        "data": {
            "node-entrypoint.sh": NODE_ENTRYPOINT,
            "pgpool-entrypoint.sh": PGPOOL_ENTRYPOINT,
            "event-hook.sh": EVENT_HOOK,
        },
    })
}

fn headless_service(names: &Names) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(names, names.nodes(), "node"),
        "spec": {
            "clusterIP": "None",
            // Pods are found by name before they are ready: a standby clones
            // from the primary, pgpool resolves every backend.
            "publishNotReadyAddresses": true,
            "selector": selector(names.group, "node"),
            "ports": [{ "name": "postgres", "port": POSTGRES_PORT, "targetPort": POSTGRES_PORT, "protocol": "TCP" }],
        },
    })
}

/// The volumes every pod mounts: configuration, scripts, passwords, scratch.
fn common_volumes(names: &Names) -> Json {
    json!([
        { "name": "config", "configMap": { "name": format!("{}-config", names.group) } },
        { "name": "scripts", "configMap": { "name": format!("{}-scripts", names.group), "defaultMode": 0o555 } },
        { "name": "secrets", "secret": { "secretName": format!("{}-passwords", names.group), "defaultMode": 0o440 } },
        { "name": "run", "emptyDir": {} },
    ])
}

fn common_mounts() -> Vec<Json> {
    vec![
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": true }),
        json!({ "name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true }),
        json!({ "name": "run", "mountPath": RUN_DIR }),
    ]
}

fn env(names: &Names, nodes: usize) -> Json {
    json!([
        { "name": "GROUP", "value": names.group },
        { "name": "NAMESPACE", "value": names.namespace },
        { "name": "NODES", "value": nodes.to_string() },
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
    ])
}

fn security_context() -> Json {
    json!({ "runAsUser": UID, "runAsGroup": UID, "runAsNonRoot": true, "fsGroup": UID })
}

fn stateful_set(spec: &GroupSpec, k: &KubernetesSpec, names: &Names) -> Json {
    let nodes = spec.standbys + 1;
    let volumes = common_volumes(names);
    let mut mounts = common_mounts();
    mounts.push(json!({ "name": "data", "mountPath": DATA_MOUNT }));
    let mut sts_spec = json!({
        "serviceName": names.nodes(),
        "replicas": nodes,
        // Parallel: every pod starts at once and the entrypoint decides who
        // initialises (ordinal 0, only while no node is primary) and who
        // clones (waiting for a primary by exiting and being restarted).
        // OrderedReady would keep a failed-over group from restarting when
        // pod 0 is a fenced old primary that waits for the new primary, a
        // pod with a higher ordinal, to be up first.
        "podManagementPolicy": "Parallel",
        "selector": { "matchLabels": selector(names.group, "node") },
        "template": {
            "metadata": { "labels": labels(names.group, "node") },
            "spec": {
                "securityContext": security_context(),
                "terminationGracePeriodSeconds": 60,
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{
                            "labelSelector": { "matchLabels": selector(names.group, "node") },
                            "topologyKey": "kubernetes.io/hostname",
                        }],
                    },
                },
                "containers": [{
                    "name": "postgres",
                    "image": k.image,
                    "command": ["/bin/sh", format!("{SCRIPTS_DIR}/node-entrypoint.sh")],
                    "env": env(names, nodes),
                    "ports": [{ "name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP" }],
                    "readinessProbe": {
                        "exec": { "command": ["pg_isready", "-h", RUN_DIR, "-p", POSTGRES_PORT.to_string(), "-U", SUPERUSER] },
                        "periodSeconds": 5,
                        "timeoutSeconds": 3,
                        "failureThreshold": 3,
                    },
                    "volumeMounts": mounts,
                }],
            },
        },
    });
    if !k.node_selector.is_empty() {
        sts_spec["template"]["spec"]["nodeSelector"] = json!(k.node_selector);
    }
    // Existing claims named as the template's would be (data-NAME-nodes-N,
    // checked at plan) are adopted by the StatefulSet: it makes only the
    // claims that are missing, and never changes one that exists.
    let (storage_class, size) = match &k.storage {
        Storage::Template { storage_class, size } => (Some(storage_class.as_str()), size.as_str()),
        Storage::Claims(_) => (None, crate::pgpool::ha::defaults::kubernetes::STORAGE_SIZE),
    };
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": size } },
    });
    if let Some(class) = storage_class {
        claim_spec["storageClassName"] = json!(class);
    }
    sts_spec["volumeClaimTemplates"] = json!([{
        "metadata": { "name": "data", "labels": labels(names.group, "node") },
        "spec": claim_spec,
    }]);
    sts_spec["persistentVolumeClaimRetentionPolicy"] = json!({
        "whenDeleted": if k.keep_volumes_on_destroy { "Retain" } else { "Delete" },
        "whenScaled": "Retain",
    });
    sts_spec["template"]["spec"]["volumes"] = volumes;
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(names, names.nodes(), "node"),
        "spec": sts_spec,
    })
}

fn disruption_budget(names: &Names) -> Json {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(names, names.nodes(), "node"),
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector(names.group, "node") } },
    })
}

fn pgpool_deployment(k: &KubernetesSpec, names: &Names) -> Json {
    let mut pod_spec = json!({
        "securityContext": security_context(),
        "containers": [{
            "name": "pgpool",
            "image": k.image,
            "command": ["/bin/sh", format!("{SCRIPTS_DIR}/pgpool-entrypoint.sh")],
            "ports": [
                { "name": "pgpool", "containerPort": PGPOOL_PORT, "protocol": "TCP" },
                { "name": "pcp", "containerPort": PCP_PORT, "protocol": "TCP" },
            ],
            "readinessProbe": {
                "tcpSocket": { "port": PGPOOL_PORT },
                "periodSeconds": 5,
            },
            "volumeMounts": common_mounts(),
        }],
        "volumes": common_volumes(names),
    });
    if !k.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(k.node_selector);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(names, names.pgpool(), "pgpool"),
        "spec": {
            "replicas": 1,
            // Never two pgpools at once (each keeps its own view of the primary).
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": selector(names.group, "pgpool") },
            "template": { "metadata": { "labels": labels(names.group, "pgpool") }, "spec": pod_spec },
        },
    })
}

fn pcp_service(names: &Names) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(names, names.pgpool(), "pgpool"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(names.group, "pgpool"),
            "ports": [{ "name": "pcp", "port": PCP_PORT, "targetPort": PCP_PORT, "protocol": "TCP" }],
        },
    })
}

fn endpoint_service(k: &KubernetesSpec, names: &Names) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(names, names.group.to_string(), "pgpool"),
        "spec": {
            "type": k.service_type,
            "selector": selector(names.group, "pgpool"),
            "ports": [{ "name": "postgres", "port": POSTGRES_PORT, "targetPort": PGPOOL_PORT, "protocol": "TCP" }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Value;

    fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn spec(kubernetes: Vec<(&str, Value)>) -> GroupSpec {
        let mut block = vec![("namespace", Value::string("db")), ("image", Value::string("registry.example.com/pgpool-ha:15"))];
        block.extend(kubernetes);
        GroupSpec::from_value(&object(vec![
            ("name", Value::string("w1")),
            ("target", Value::string("kubernetes")),
            ("standbys", Value::int(2)),
            ("kubernetes", object(block)),
        ]))
    }

    fn objects(spec: &GroupSpec) -> GroupObjects {
        render(spec, &Secret::new("pcp-secret")).unwrap()
    }

    #[test]
    fn every_object_is_named_labelled_and_in_the_namespace() {
        let objects = objects(&spec(vec![]));
        let names: Vec<String> = objects
            .objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                "Secret/w1-passwords",
                "ConfigMap/w1-config",
                "ConfigMap/w1-scripts",
                "Service/w1-nodes",
                "StatefulSet/w1-nodes",
                "PodDisruptionBudget/w1-nodes",
                "Deployment/w1-pgpool",
                "Service/w1-pgpool",
                "Service/w1",
            ]
        );
        for o in &objects.objects {
            assert_eq!(o["metadata"]["namespace"], "db");
            let labels = &o["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "pgpool-ha");
            assert_eq!(labels["app.kubernetes.io/instance"], "w1");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "shardform");
            assert!(labels["app.kubernetes.io/component"].is_string());
        }
    }

    /// Every label of `selector` is on the pods of `template`.
    fn selects(selector: &Json, template_labels: &Json) -> bool {
        selector.as_object().unwrap().iter().all(|(k, v)| &template_labels[k] == v)
    }

    #[test]
    fn selectors_match_their_pods_and_only_them() {
        let objects = objects(&spec(vec![]));
        let sts = objects.get("StatefulSet", "w1-nodes").unwrap();
        let node_pods = &sts["spec"]["template"]["metadata"]["labels"];
        let deploy = objects.get("Deployment", "w1-pgpool").unwrap();
        let pgpool_pods = &deploy["spec"]["template"]["metadata"]["labels"];
        assert!(selects(&sts["spec"]["selector"]["matchLabels"], node_pods));
        assert!(selects(&deploy["spec"]["selector"]["matchLabels"], pgpool_pods));
        for (kind, name, pods, other) in [
            ("Service", "w1-nodes", node_pods, pgpool_pods),
            ("Service", "w1", pgpool_pods, node_pods),
            ("Service", "w1-pgpool", pgpool_pods, node_pods),
        ] {
            let selector = &objects.get(kind, name).unwrap()["spec"]["selector"];
            assert!(selects(selector, pods) && !selects(selector, other), "{name}");
        }
        let pdb = objects.get("PodDisruptionBudget", "w1-nodes").unwrap();
        assert!(selects(&pdb["spec"]["selector"]["matchLabels"], node_pods));
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        let headless = objects.get("Service", "w1-nodes").unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(sts["spec"]["serviceName"], "w1-nodes");
        let endpoint = objects.get("Service", "w1").unwrap();
        assert_eq!(endpoint["spec"]["type"], "ClusterIP");
        assert_eq!(endpoint["spec"]["ports"][0]["targetPort"], PGPOOL_PORT);
    }

    #[test]
    fn nodes_spread_over_kubernetes_nodes_with_probes_mounts_and_uid_999() {
        let spec = spec(vec![("node_selector", Value::Map([("disk".to_string(), Value::string("ssd"))].into_iter().collect()))]);
        let objects = objects(&spec);
        let sts = objects.get("StatefulSet", "w1-nodes").unwrap();
        assert_eq!(sts["spec"]["replicas"], 3);
        assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
        let pod = &sts["spec"]["template"]["spec"];
        let anti = &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert!(selects(&anti["labelSelector"]["matchLabels"], &sts["spec"]["template"]["metadata"]["labels"]));
        assert_eq!(pod["nodeSelector"]["disk"], "ssd");
        assert_eq!(pod["securityContext"]["runAsUser"], 999);
        assert_eq!(pod["securityContext"]["fsGroup"], 999);
        let container = &pod["containers"][0];
        assert_eq!(container["readinessProbe"]["exec"]["command"][0], "pg_isready");
        let mounts: Vec<&str> = container["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
        assert_eq!(mounts, ["/shardform/config", "/shardform/scripts", "/shardform/secrets", "/shardform/run", "/var/lib/postgresql/data"]);
        let template = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(template["metadata"]["name"], "data");
        assert_eq!(template["spec"]["storageClassName"], "longhorn");
        assert_eq!(template["spec"]["resources"]["requests"]["storage"], "10Gi");
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Retain");
        // Every volume a container mounts exists in its pod.
        for workload in [sts, objects.get("Deployment", "w1-pgpool").unwrap()] {
            let pod = &workload["spec"]["template"]["spec"];
            let mut volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
            if let Some(templates) = workload["spec"]["volumeClaimTemplates"].as_array() {
                volumes.extend(templates.iter().map(|t| t["metadata"]["name"].as_str().unwrap()));
            }
            for mount in pod["containers"][0]["volumeMounts"].as_array().unwrap() {
                assert!(volumes.contains(&mount["name"].as_str().unwrap()), "{mount}");
            }
        }
        let env = &container["env"];
        assert!(env.as_array().unwrap().iter().any(|e| e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
    }

    #[test]
    fn existing_claims_are_adopted_and_kept_volumes_follow_the_flag() {
        let spec = spec(vec![
            ("volume_claims", Value::List((0..3).map(|i| Value::string(format!("data-w1-nodes-{i}"))).collect())),
            ("keep_volumes_on_destroy", Value::Bool(false)),
            ("service_type", Value::string("LoadBalancer")),
        ]);
        let objects = objects(&spec);
        let sts = objects.get("StatefulSet", "w1-nodes").unwrap();
        assert!(sts["spec"]["volumeClaimTemplates"][0]["spec"].get("storageClassName").is_none());
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Delete");
        assert_eq!(objects.get("Service", "w1").unwrap()["spec"]["type"], "LoadBalancer");
    }

    #[test]
    fn the_config_map_holds_the_shared_files_per_ordinal() {
        let mut spec = spec(vec![]);
        spec.postgresql_settings.insert("work_mem".into(), "64MB".into());
        spec.synchronous_replication = true;
        let objects = objects(&spec);
        let data = &objects.get("ConfigMap", "w1-config").unwrap()["data"];
        let conf = data["postgresql.node.conf"].as_str().unwrap();
        assert!(conf.contains("work_mem = '64MB'") && conf.contains("listen_addresses = '*'"), "{conf}");
        assert!(conf.contains("synchronous_standby_names = 'ANY 1 (\"node0\", \"node1\", \"node2\")'"), "{conf}");
        assert!(conf.contains("hba_file = '/shardform/config/pg_hba.conf'"));
        for i in 0..3 {
            let repmgr = data[format!("repmgr-{i}.conf")].as_str().unwrap();
            assert!(repmgr.contains(&format!("node_id={}\n", i + 1)), "{repmgr}");
            assert!(repmgr.contains(&format!("conninfo='host=w1-nodes-{i}.w1-nodes.db.svc port=5432")), "{repmgr}");
            assert!(repmgr.contains("event_notification_command='/shardform/scripts/event-hook.sh %n %e %s'"));
            assert!(repmgr.contains("data_directory='/var/lib/postgresql/data/pgdata'"));
        }
        assert!(data.get("repmgr-3.conf").is_none());
        let pgpool = data["pgpool.conf"].as_str().unwrap();
        assert!(pgpool.contains("backend_hostname2 = 'w1-nodes-2.w1-nodes.db.svc'"), "{pgpool}");
        assert!(pgpool.contains("port = 9999") && pgpool.contains("failover_on_backend_error = off"));
        let scripts = &objects.get("ConfigMap", "w1-scripts").unwrap()["data"];
        for name in ["node-entrypoint.sh", "pgpool-entrypoint.sh", "event-hook.sh"] {
            let script = scripts[name].as_str().unwrap();
            let checked = std::process::Command::new("sh").args(["-n", "-c", script]).output().unwrap();
            assert!(checked.status.success(), "{name}: {}", String::from_utf8_lossy(&checked.stderr));
        }
    }

    #[test]
    fn passwords_are_only_in_the_secret() {
        let mut spec = spec(vec![]);
        spec.superuser_password = Some(Secret::new("s3cr:et"));
        let objects = objects(&spec);
        let secret = objects.get("Secret", "w1-passwords").unwrap();
        assert_eq!(secret["stringData"]["superuser-password"], "s3cr:et");
        assert_eq!(secret["stringData"]["pgpass"], "*:*:*:postgres:s3cr\\:et\n");
        assert_eq!(secret["stringData"]["pcp-password"], "pcp-secret");
        for o in objects.objects.iter().filter(|o| o["kind"] != "Secret") {
            let text = o.to_string();
            assert!(!text.contains("s3cr") && !text.contains("pcp-secret"), "{}", o["metadata"]["name"]);
        }
        assert!(objects.get("ConfigMap", "w1-config").unwrap()["data"]["pg_hba.conf"].as_str().unwrap().contains("0.0.0.0/0 scram-sha-256"));
    }
}
