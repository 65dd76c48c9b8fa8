//! `terraform import pgpool_ha.NAME BASE_DIR` on this machine: every
//! converge saves the configuration it applied in `BASE/shardform.json`
//! (see `configuration`), and import reads it back, with the secrets from the
//! group's own files, then observes the live group as a refresh does.

use std::path::Path;

use crate::cty::Value;
use crate::framework::Diagnostics;
use crate::pgpool::ha::configuration::{fill_defaults, from_json, strip, to_json};
use crate::pgpool::ha::layout::{Layout, CONFIG_FILE, MARKER};
use crate::pgpool::ha::model::GroupSpec;
use crate::pgpool::ha::render;
use crate::pgpool::ha::schema::schema;

use super::host::{write_file, LocalError};
use super::observe;

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
        if let Some(password) = render::read_pool_password(&pgpool.pool_passwd()) {
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
    let mut fields = render::split_fields(line);
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
    let slots = observe::slots_on_disk(layout);
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
    use crate::pgpool::ha::configuration::tests::applied;

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
