//! The configuration a group was made from, as saved for `terraform import`.
//!
//! A group's processes and files do not tell which configuration made them
//! (defaults, settings the group owns, blocks left out all look alike), so
//! every converge saves the configuration it applied in `BASE/shardform.json`
//! and import reads it back, then observes the live group as a refresh does.
//!
//! What is saved is found by walking the schema, not listed here: every
//! attribute the user may set (required, optional, optional with a default),
//! in every nested block, except sensitive ones. An attribute added to the
//! schema is saved and imported without code here; one the file predates is
//! imported at its default. Secrets (`citus.password`) never reach the disk
//! this way, so import leaves them null and the plan after import sets them.

use serde_json::{json, Value as Json};

use crate::cty::{decode_json, encode_json, Value};
use crate::framework::{Block, Nesting, Presence};

use super::schema::schema;

/// Bumped when the file's envelope changes (not when the schema gains attributes).
const FORMAT: u64 = 1;
const RESOURCE: &str = "pgpool_ha";

/// The part of a resource value that import restores: the configurable,
/// non-sensitive attributes; null everywhere else (computed attributes,
/// secrets, unknowns).
pub fn configuration(value: &Value) -> Value {
    if !matches!(value, Value::Object(_)) {
        return Value::Null;
    }
    strip(&schema().block, value)
}

fn saved(presence: Presence, sensitive: bool) -> bool {
    presence != Presence::Computed && !sensitive
}

pub fn strip(block: &Block, value: &Value) -> Value {
    if !matches!(value, Value::Object(_)) {
        return Value::Null;
    }
    let mut fields = std::collections::BTreeMap::new();
    for a in &block.attributes {
        let v = value.attr(a.name);
        let keep = saved(a.presence, a.sensitive) && v.is_wholly_known();
        fields.insert(
            a.name.to_string(),
            if keep { v.clone() } else { Value::Null },
        );
    }
    for nested in &block.blocks {
        let v = value.attr(nested.name);
        let stripped = match (nested.nesting, v) {
            (Nesting::Single, v) => strip(&nested.block, v),
            (Nesting::List, Value::List(items)) => {
                Value::List(items.iter().map(|i| strip(&nested.block, i)).collect())
            }
            (Nesting::Map, Value::Map(items)) => Value::Map(
                items
                    .iter()
                    .map(|(k, i)| (k.clone(), strip(&nested.block, i)))
                    .collect(),
            ),
            _ => nested.empty_value(),
        };
        fields.insert(nested.name.to_string(), stripped);
    }
    Value::Object(fields)
}

/// Sets every null attribute that has a default to it, in present blocks:
/// what a file written before the attribute existed means.
pub fn fill_defaults(block: &Block, value: &mut Value) {
    let Some(fields) = value.as_object_mut() else {
        return;
    };
    for a in &block.attributes {
        if let Some(default) = a.default_value() {
            let slot = fields.entry(a.name.to_string()).or_insert(Value::Null);
            if slot.is_null() {
                *slot = default.clone();
            }
        }
    }
    for nested in &block.blocks {
        let Some(v) = fields.get_mut(nested.name) else {
            continue;
        };
        match v {
            Value::List(items) => items
                .iter_mut()
                .for_each(|i| fill_defaults(&nested.block, i)),
            Value::Map(items) => items
                .values_mut()
                .for_each(|i| fill_defaults(&nested.block, i)),
            object @ Value::Object(_) => fill_defaults(&nested.block, object),
            _ => {}
        }
    }
}

/// The file's text for a configuration (see [`configuration`]).
pub fn to_json(configuration: &Value) -> Result<String, String> {
    let ty = schema().value_type();
    let config = encode_json(configuration, &ty).map_err(|e| e.to_string())?;
    let file = json!({
        "resource": RESOURCE,
        "format": FORMAT,
        "written_by": concat!("shardform ", env!("CARGO_PKG_VERSION")),
        "note": "Written by the pgpool_ha resource at every apply, for terraform import. Secrets are not saved.",
        "configuration": config,
    });
    serde_json::to_string_pretty(&file)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// A configuration back from the file's text: an object of the schema's
/// type, attributes the file lacks at their defaults, computed ones null.
pub fn from_json(text: &str) -> Result<Value, String> {
    let file: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if file.get("resource").and_then(Json::as_str) != Some(RESOURCE) {
        return Err(format!("not a {RESOURCE} configuration file"));
    }
    match file.get("format").and_then(Json::as_u64) {
        Some(FORMAT) => {}
        other => {
            return Err(format!(
                "format {} is not the format {FORMAT} this provider reads (written by {})",
                other.map_or("(none)".to_string(), |f| f.to_string()),
                file.get("written_by")
                    .and_then(Json::as_str)
                    .unwrap_or("an unknown version")
            ))
        }
    }
    let Some(config) = file.get("configuration").filter(|c| c.is_object()) else {
        return Err("it has no configuration object".into());
    };
    let schema = schema();
    let bytes = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let decoded = decode_json(&bytes, &schema.value_type()).map_err(|e| e.to_string())?;
    // Decoding keeps computed attributes a hand-edited file might carry: drop them.
    let mut value = strip(&schema.block, &decoded);
    fill_defaults(&schema.block, &mut value);
    Ok(value)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pgpool::ha::model::GroupSpec;
    use std::collections::BTreeMap;

    pub(crate) fn obj(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A value as an apply sees it: configuration with defaults, computed
    /// attributes, a secret.
    pub(crate) fn applied() -> Value {
        obj(vec![
            ("id", Value::string("/srv/g")),
            ("name", Value::string("g")),
            ("target", Value::string("local")),
            ("base_dir", Value::string("/srv/g")),
            ("standbys", Value::int(1)),
            ("port_base", Value::int(7000)),
            (
                "postgresql_settings",
                Value::Map(BTreeMap::from([
                    ("work_mem".to_string(), Value::string("64MB")),
                    ("fsync".to_string(), Value::string("off")),
                ])),
            ),
            (
                "preload_libraries",
                Value::List(vec![Value::string("pg_stat_statements")]),
            ),
            ("synchronous_replication", Value::Bool(false)),
            ("deletion_protection", Value::Bool(false)),
            ("endpoint_host", Value::string("127.0.0.1")),
            ("endpoint_port", Value::int(7000)),
            ("primary", Value::string("node0")),
            ("primary_port", Value::Unknown),
            (
                "nodes",
                Value::List(vec![obj(vec![("name", Value::string("node0"))])]),
            ),
            (
                "pgpool_settings",
                obj(vec![
                    ("load_balance_mode", Value::Bool(true)),
                    ("disable_load_balance_on_write", Value::string("always")),
                    ("health_check_period", Value::int(1)),
                    ("health_check_timeout", Value::int(10)),
                    ("health_check_max_retries", Value::int(1)),
                    ("sr_check_period", Value::int(5)),
                    ("num_init_children", Value::int(8)),
                    ("max_pool", Value::int(2)),
                ]),
            ),
            ("failover_settings", Value::Null),
            (
                "citus",
                obj(vec![
                    ("coordinator_host", Value::string("10.0.0.1")),
                    ("coordinator_port", Value::int(5432)),
                    ("database", Value::string("postgres")),
                    ("username", Value::string("postgres")),
                    ("password", Value::string("s3cret")),
                ]),
            ),
            ("timeouts", obj(vec![("create", Value::string("30m"))])),
        ])
    }

    #[test]
    fn round_trip_keeps_configuration_and_drops_secrets_and_computed() {
        let applied = applied();
        let config = configuration(&applied);
        let text = to_json(&config).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            !text.contains("node0"),
            "computed attributes are not saved: {text}"
        );
        let back = from_json(&text).unwrap();
        assert_eq!(back, config);
        for name in [
            "name",
            "base_dir",
            "standbys",
            "port_base",
            "postgresql_settings",
            "preload_libraries",
            "deletion_protection",
            "pgpool_settings",
            "timeouts",
        ] {
            let (got, want) = (back.attr(name), applied.attr(name));
            match (got, want) {
                // Blocks: what the fixture sets survives; attributes it
                // leaves out (say, added to the schema later) are null.
                (Value::Object(got), Value::Object(want)) => {
                    for (k, v) in want {
                        assert_eq!(got.get(k), Some(v), "{name}.{k}");
                    }
                }
                _ => assert_eq!(got, want, "{name}"),
            }
        }
        assert_eq!(
            back.attr("citus").attr("coordinator_host").as_str(),
            Some("10.0.0.1")
        );
        assert!(back.attr("citus").attr("password").is_null());
        for computed in ["id", "endpoint_port", "primary", "primary_port", "nodes"] {
            assert!(back.attr(computed).is_null(), "{computed}");
        }
        assert!(back.attr("failover_settings").is_null());
        // The whole schema is there, so the value has the resource's type.
        assert_eq!(
            back.as_object().unwrap().len(),
            schema().block.attributes.len() + schema().block.blocks.len()
        );
    }

    #[test]
    fn every_configurable_attribute_is_saved() {
        let block = schema().block;
        let config = configuration(&applied());
        for a in &block.attributes {
            let kept = !config.attr(a.name).is_null();
            let expect = a.presence != Presence::Computed
                && !a.sensitive
                && !applied().attr(a.name).is_null();
            assert_eq!(kept, expect, "{}", a.name);
        }
    }

    #[test]
    fn a_file_older_than_an_attribute_imports_its_default() {
        let config = configuration(&applied());
        let mut json: Json = serde_json::from_str(&to_json(&config).unwrap()).unwrap();
        let c = json["configuration"].as_object_mut().unwrap();
        c.remove("synchronous_replication");
        c["pgpool_settings"]
            .as_object_mut()
            .unwrap()
            .remove("max_pool");
        // An attribute a later schema dropped is ignored.
        c.insert("retired".into(), json!(true));
        let back = from_json(&json.to_string()).unwrap();
        assert_eq!(back.attr("synchronous_replication"), &Value::Bool(false));
        assert_eq!(
            back.attr("pgpool_settings").attr("max_pool").as_i64(),
            Some(2)
        );
        assert!(back.attr("retired").is_null());
        // Absent blocks stay absent.
        assert!(back.attr("failover_settings").is_null());
    }

    #[test]
    fn foreign_or_newer_files_are_refused() {
        assert!(from_json("not json").unwrap_err().contains("not JSON"));
        assert!(from_json(r#"{"resource": "other", "format": 1, "configuration": {}}"#).is_err());
        let err = from_json(r#"{"resource": "pgpool_ha", "format": 9, "written_by": "shardform 9.0.0", "configuration": {}}"#).unwrap_err();
        assert!(err.contains("shardform 9.0.0"), "{err}");
        assert!(from_json(r#"{"resource": "pgpool_ha", "format": 1}"#).is_err());
    }

    #[test]
    fn null_values_are_not_saved() {
        assert!(configuration(&Value::Null).is_null());
        let spec = GroupSpec::from_value(&Value::Null);
        assert!(spec.configuration.is_null());
    }
}
