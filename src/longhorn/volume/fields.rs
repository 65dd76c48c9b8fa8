//! The Volume spec fields the resource exposes besides `size`: attribute
//! name, JSON key, type, and whether a change replaces the volume.

use serde_json::Value as Json;

use crate::cty::{Number, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
    Bool,
    StrList,
}

pub struct SpecField {
    pub attr: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    /// Immutable in Longhorn: a change plans a replacement.
    pub replace: bool,
    /// Longhorn's webhook fills it when not set (optional+computed).
    pub computed: bool,
    pub describe: &'static str,
}

const fn field(
    attr: &'static str,
    key: &'static str,
    kind: Kind,
    replace: bool,
    computed: bool,
    describe: &'static str,
) -> SpecField {
    SpecField {
        attr,
        key,
        kind,
        replace,
        computed,
        describe,
    }
}

pub const SPEC_FIELDS: &[SpecField] = &[
    field("number_of_replicas", "numberOfReplicas", Kind::Int, false, true,
        "Replicas, 1 to 20 (Longhorn's default: 3). Must be 1 with `data_locality = \"strict-local\"`."),
    field("data_locality", "dataLocality", Kind::Str, false, true,
        "`disabled`, `best-effort` or `strict-local` (Longhorn's default: `disabled`)."),
    field("access_mode", "accessMode", Kind::Str, false, true,
        "`rwo`, `rwop` or `rwx` (Longhorn's default: `rwo`)."),
    field("migratable", "migratable", Kind::Bool, false, true,
        "Live migration between nodes; only with `access_mode = \"rwx\"`."),
    field("frontend", "frontend", Kind::Str, false, true,
        "`blockdev`, `iscsi`, `nvmf` or `ublk` (Longhorn's default: `blockdev`)."),
    field("disk_selector", "diskSelector", Kind::StrList, false, true,
        "Disk tags replicas must be placed on."),
    field("node_selector", "nodeSelector", Kind::StrList, false, true,
        "Node tags replicas must be placed on."),
    field("stale_replica_timeout", "staleReplicaTimeout", Kind::Int, false, true,
        "Minutes before a failed replica is given up, 1 to 20160."),
    field("replica_auto_balance", "replicaAutoBalance", Kind::Str, false, true,
        "`ignored` (follow the global setting), `disabled`, `least-effort` or `best-effort`."),
    field("encrypted", "encrypted", Kind::Bool, true, true,
        "Encrypt the volume (needs Longhorn's encryption secret). Immutable: a change replaces the volume."),
    field("data_engine", "dataEngine", Kind::Str, true, true,
        "`v1` or `v2` (Longhorn's default: `v1`). Immutable: a change replaces the volume."),
    field("from_backup", "fromBackup", Kind::Str, true, false,
        "Backup URL to restore the volume from. Immutable: a change replaces the volume."),
    field("data_source", "dataSource", Kind::Str, true, false,
        "Clone source: `vol://VOLUME` or `snap://VOLUME/SNAPSHOT`. Immutable: a change replaces the volume."),
    field("backing_image", "backingImage", Kind::Str, true, false,
        "Backing image name. Immutable: a change replaces the volume."),
];

pub fn by_attr(attr: &str) -> Option<&'static SpecField> {
    SPEC_FIELDS.iter().find(|f| f.attr == attr)
}

impl SpecField {
    /// The JSON Longhorn expects for a known, non-null value.
    pub fn to_json(&self, value: &Value) -> Json {
        match (self.kind, value) {
            (Kind::Int, v) => v.as_i64().map(Json::from).unwrap_or(Json::Null),
            (Kind::Bool, v) => v.as_bool().map(Json::from).unwrap_or(Json::Null),
            (Kind::Str, v) => v.as_str().map(Json::from).unwrap_or(Json::Null),
            (Kind::StrList, v) => Json::Array(
                v.as_elements()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| e.as_str().map(Json::from))
                    .collect(),
            ),
        }
    }

    /// The attribute value of what Longhorn stores; empty strings read as unset.
    pub fn from_json(&self, json: Option<&Json>) -> Value {
        match (self.kind, json) {
            (Kind::Int, Some(j)) => j
                .as_i64()
                .map(|n| Value::Number(Number::from(n)))
                .unwrap_or(Value::Null),
            (Kind::Bool, Some(Json::Bool(b))) => Value::Bool(*b),
            (Kind::Bool, _) if self.computed => Value::Bool(false),
            (Kind::Str, Some(Json::String(s))) if !s.is_empty() => Value::string(s.clone()),
            (Kind::StrList, j) => Value::List(
                j.and_then(Json::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(Value::string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => Value::Null,
        }
    }
}
