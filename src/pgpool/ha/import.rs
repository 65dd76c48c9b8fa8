//! `terraform import pgpool_ha.NAME BASE_DIR`.
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

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::cty::{decode_json, encode_json, Value};
use crate::framework::{Block, Diagnostics, Nesting, Presence};

use super::layout::{Layout, CONFIG_FILE, MARKER};
use super::local::{write_file, LocalError};
use super::model::GroupSpec;
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

fn strip(block: &Block, value: &Value) -> Value {
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
fn fill_defaults(block: &Block, value: &mut Value) {
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

/// Saves what `spec` was made from, for import. Called at every converge,
/// once the base directory exists.
pub fn save(spec: &GroupSpec) -> Result<(), LocalError> {
    if spec.configuration.is_null() {
        return Ok(());
    }
    let text = to_json(&spec.configuration).map_err(|e| LocalError::Failed {
        program: format!("writing {CONFIG_FILE}"),
        status: "encoding failed".into(),
        output: e,
    })?;
    write_file(&spec.layout().config_file(), &text, 0o600)?;
    Ok(())
}

/// The value to import for `id` (a base directory), before the live group
/// is observed; `None` with an error diagnostic when there is none.
pub fn restore(id: &str, diags: &mut Diagnostics) -> Option<Value> {
    let dir = Path::new(id);
    if !dir.is_absolute() {
        diags.error(
            "Invalid import ID",
            format!("The import ID of pgpool_ha is the group's base_dir, an absolute path such as /srv/pgpool/g1; got {id:?}."),
        );
        return None;
    }
    if !dir.exists() {
        diags.error(
            "No such group",
            format!("{id} does not exist, so there is no pgpool_ha group to import there."),
        );
        return None;
    }
    if !dir.is_dir() {
        diags.error("Not a pgpool_ha group", format!("{id} is not a directory."));
        return None;
    }
    let layout = Layout::new(dir, 0);
    if !layout.marker().exists() {
        diags.error(
            "Not a pgpool_ha group",
            format!("{id} holds no pgpool_ha group (it has no {MARKER} file, which every group's base_dir has)."),
        );
        return None;
    }
    let file = layout.config_file();
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return legacy(id, &layout, diags),
        Err(e) => {
            diags.error(
                "Cannot read the group's configuration",
                format!("{}: {e}", file.display()),
            );
            return None;
        }
    };
    let mut value = match from_json(&text) {
        Ok(value) => value,
        Err(e) => {
            diags.error(
                "Unreadable group configuration",
                format!(
                    "{}: {e}. An apply of the group with this provider rewrites it.",
                    file.display()
                ),
            );
            return None;
        }
    };
    // The configuration names the directory the group was made in; its files
    // do too, so a group moved elsewhere does not work there.
    let saved_dir = value
        .attr("base_dir")
        .as_str()
        .unwrap_or_default()
        .to_string();
    if saved_dir != id {
        let same = match (Path::new(&saved_dir).canonicalize(), dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            diags.error(
                "Group was moved",
                format!("The group in {id} was created with base_dir = {saved_dir:?}, and its configuration files and scripts name that path. Move it back, or import it by that path."),
            );
            return None;
        }
    }
    if value.attr("port_base").as_i64().is_none() {
        diags.error(
            "Unreadable group configuration",
            format!("{} has no port_base.", file.display()),
        );
        return None;
    }
    if let Some(fields) = value.as_object_mut() {
        fields.insert("id".into(), Value::string(saved_dir));
    }
    restore_secrets(&layout, &mut value);
    Some(value)
}

/// The secrets are not in `shardform.json`; the group's own files (mode
/// 0600) hold what the nodes and scripts use: the superuser password in
/// pgpool's `pool_passwd`, the coordinator's in `citus.pgpass`.
///
/// A secret that was given write-only (its `_wo_version` is saved) stays out
/// of the imported state, as it stayed out of the state import replaces.
fn restore_secrets(layout: &Layout, value: &mut Value) {
    let pgpool = layout.pgpool();
    let Some(fields) = value.as_object_mut() else { return };
    let write_only = |fields: &std::collections::BTreeMap<String, Value>, name: &str| {
        fields.get(&format!("{name}_wo_version")).is_some_and(|v| !v.is_null())
    };
    if !write_only(fields, "superuser_password") {
        if let Some(password) = super::render::read_pool_password(&pgpool.pool_passwd()) {
            fields.insert("superuser_password".into(), Value::string(password));
        }
    }
    let Some(citus) = fields.get_mut("citus").and_then(Value::as_object_mut) else {
        return;
    };
    if write_only(citus, "password") {
        return;
    }
    let password = std::fs::read_to_string(pgpool.citus_pgpass())
        .ok()
        .and_then(|text| pgpass_password(text.lines().next()?));
    if let Some(password) = password {
        citus.insert("password".into(), Value::string(password));
    }
}

/// The fifth field of a libpq password file line, `\` escapes undone.
fn pgpass_password(line: &str) -> Option<String> {
    let mut fields = super::render::split_fields(line);
    (fields.len() == 5).then(|| fields.pop()).flatten()
}

/// A group written before `shardform.json` existed: what its files tell for
/// sure (name, ports, number of nodes), every other attribute at its default.
fn legacy(id: &str, layout: &Layout, diags: &mut Diagnostics) -> Option<Value> {
    let name = std::fs::read_to_string(layout.marker())
        .unwrap_or_default()
        .trim()
        .to_string();
    let node0_port = std::fs::read_to_string(layout.node(0).node_conf())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("port = ")?.trim().parse::<i64>().ok());
    let slots = super::observe::slots_on_disk(layout);
    let (Some(node0_port), false, false) = (node0_port, name.is_empty(), slots.is_empty()) else {
        diags.error(
            "Group cannot be imported",
            format!(
                "{id} holds a pgpool_ha group written by an older provider version (it has no {CONFIG_FILE}), \
                 and its files do not tell its name and ports. Apply the group once with the current provider \
                 from the state that manages it, then import it."
            ),
        );
        return None;
    };
    let mut value = Value::Object(
        [
            ("id", Value::string(id)),
            ("name", Value::string(name)),
            ("base_dir", Value::string(id)),
            ("port_base", Value::int(node0_port - 2)),
            ("standbys", Value::int(slots.len() as i64 - 1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    let schema = schema();
    value = strip(&schema.block, &value);
    fill_defaults(&schema.block, &mut value);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("id".into(), Value::string(id));
    }
    diags.warning(
        "Imported from an older group's files",
        format!(
            "{id} was written by a provider version without {CONFIG_FILE}: only name, base_dir, port_base and \
             standbys were read from its files; every other attribute is imported at its default. Review the \
             plan: the next apply makes the group what the configuration says and saves {CONFIG_FILE}."
        ),
    );
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn obj(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A value as an apply sees it: configuration with defaults, computed
    /// attributes, a secret.
    fn applied() -> Value {
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

    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("shardform-import-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn restore_error(id: &str) -> String {
        let mut diags = Diagnostics::new();
        assert!(restore(id, &mut diags).is_none());
        let d = diags.iter().next().expect("a diagnostic");
        format!("{}: {}", d.summary, d.detail)
    }

    #[test]
    fn the_coordinator_password_is_read_back_from_its_password_file() {
        let citus = crate::pgpool::ha::model::CitusSpec {
            coordinator_host: "h:x".into(),
            coordinator_port: 5432,
            database: "db".into(),
            username: "u".into(),
            password: Some(r"p:a\ss".into()),
        };
        let line = crate::pgpool::ha::render::citus_pgpass(&citus).unwrap();
        assert_eq!(pgpass_password(line.trim_end()).as_deref(), Some(r"p:a\ss"));
        assert_eq!(pgpass_password("a:b:c"), None);
    }

    #[test]
    fn import_ids_that_are_not_groups_are_explained() {
        assert!(restore_error("relative/dir").starts_with("Invalid import ID"));
        let tmp = TempDir::new("errors");
        assert!(restore_error(&format!("{}/missing", tmp.path())).starts_with("No such group"));
        assert!(restore_error(tmp.path()).contains(MARKER));
        std::fs::write(tmp.0.join(MARKER), "g\n").unwrap();
        assert!(restore_error(tmp.path()).contains("older provider version"));
        std::fs::write(tmp.0.join(CONFIG_FILE), "{").unwrap();
        assert!(restore_error(tmp.path()).starts_with("Unreadable group configuration"));
    }

    #[test]
    fn import_reads_the_saved_configuration() {
        let tmp = TempDir::new("saved");
        std::fs::write(tmp.0.join(MARKER), "g\n").unwrap();
        let mut value = applied();
        value
            .as_object_mut()
            .unwrap()
            .insert("base_dir".into(), Value::string(tmp.path()));
        let spec = GroupSpec::from_value(&value);
        save(&spec).unwrap();
        let mut diags = Diagnostics::new();
        let restored = restore(tmp.path(), &mut diags).unwrap();
        assert!(!diags.has_errors());
        assert_eq!(restored.attr("id").as_str(), Some(tmp.path()));
        assert_eq!(restored.attr("port_base").as_i64(), Some(7000));
        assert_eq!(
            restored.attr("postgresql_settings"),
            value.attr("postgresql_settings")
        );
        // A group moved elsewhere is refused: its files name the old path.
        let moved = TempDir::new("moved");
        std::fs::write(moved.0.join(MARKER), "g\n").unwrap();
        std::fs::copy(spec.layout().config_file(), moved.0.join(CONFIG_FILE)).unwrap();
        assert!(restore_error(moved.path()).starts_with("Group was moved"));
    }

    #[test]
    fn an_older_group_is_imported_from_what_its_files_tell() {
        let tmp = TempDir::new("legacy");
        std::fs::write(tmp.0.join(MARKER), "legacy-group\n").unwrap();
        for slot in 0..2 {
            std::fs::create_dir_all(tmp.0.join(format!("node{slot}"))).unwrap();
        }
        std::fs::write(
            tmp.0.join("node0/postgresql.node.conf"),
            "work_mem = '4MB'\nport = 7102\n",
        )
        .unwrap();
        let mut diags = Diagnostics::new();
        let value = restore(tmp.path(), &mut diags).unwrap();
        assert!(!diags.has_errors());
        assert!(diags.iter().any(|d| d.summary.contains("older group")));
        assert_eq!(value.attr("name").as_str(), Some("legacy-group"));
        assert_eq!(value.attr("port_base").as_i64(), Some(7100));
        assert_eq!(value.attr("standbys").as_i64(), Some(1));
        assert_eq!(value.attr("deletion_protection"), &Value::Bool(true));
    }
}
