//! Plan-time checks of a `create_if_missing` block: everything about the
//! table's shape that can be known without the database (Citus' own rules
//! included), so that no mistake waits for `CREATE TABLE` to fail at apply.

use std::collections::BTreeSet;

use crate::cty::Value;
use crate::framework::{AttrPath, Diagnostics};

/// Checks the columns, primary key and indexes of `shape` (the block's
/// value) against each other and the distribution column. Unknown parts are
/// left to apply.
pub fn check(shape: &Value, distribution_column: Option<&str>, diags: &mut Diagnostics) {
    let block = AttrPath::root("create_if_missing");
    let Some(columns) = shape.attr("column").as_elements() else {
        return;
    };
    let mut names = BTreeSet::new();
    let mut all_known = true;
    for (i, column) in columns.iter().enumerate() {
        let Some(name) = column.attr("name").as_str() else {
            all_known = false;
            continue;
        };
        if !names.insert(name.to_string()) {
            let path = block.attr("column").index(i).attr("name");
            diags.error_at(
                path.clone(),
                "Duplicate column",
                format!("{path}: the column {name:?} is declared twice; give each column block its own name."),
            );
        }
    }
    if !all_known {
        return; // Names from other resources: checked when known.
    }
    let listed = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    let unknown_column = |path: &AttrPath, name: &str, what: &str, diags: &mut Diagnostics| {
        diags.error_at(
            path.clone(),
            "Column not in create_if_missing",
            format!("{path}: {what} names {name:?}, which is no column of the table to create (its columns: {listed}). Add a column block for it or fix the name."),
        );
    };

    if let Some(column) = distribution_column {
        if !names.contains(column) {
            let path = AttrPath::root("distribution_column");
            unknown_column(&path, column, "distribution_column", diags);
        }
    }

    let key_path = block.attr("primary_key");
    if let Some(key) = shape.attr("primary_key").as_elements() {
        let mut seen = BTreeSet::new();
        let mut key_names = Vec::new();
        for (i, part) in key.iter().enumerate() {
            let Some(name) = part.as_str() else { return };
            let path = key_path.index(i);
            if !names.contains(name) {
                unknown_column(&path, name, "the primary key", diags);
            } else if !seen.insert(name) {
                diags.error_at(
                    path.clone(),
                    "Duplicate primary key column",
                    format!("{path}: {name:?} appears twice in the primary key; list each column once."),
                );
            }
            key_names.push(name);
        }
        if let Some(column) = distribution_column {
            if !key_names.is_empty() && !key_names.contains(&column) {
                diags.error_at(
                    key_path.clone(),
                    "Primary key without the distribution column",
                    format!(
                        "{key_path} ({}) must include the distribution column {column:?}: Citus can enforce a primary key only when it contains the distribution column. Add {column:?} to it.",
                        key_names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }

    if let Some(indexes) = shape.attr("indexes").as_elements() {
        for (i, index) in indexes.iter().enumerate() {
            let index_path = block.attr("indexes").index(i);
            let Some(parts) = index.as_elements() else {
                continue;
            };
            if parts.is_empty() && index.is_wholly_known() {
                diags.error_at(
                    index_path.clone(),
                    "Empty index",
                    format!("{index_path} lists no column; an index needs at least one column."),
                );
            }
            let mut seen = BTreeSet::new();
            for (j, part) in parts.iter().enumerate() {
                let Some(name) = part.as_str() else { continue };
                let path = index_path.index(j);
                if !names.contains(name) {
                    unknown_column(&path, name, "the index", diags);
                } else if !seen.insert(name) {
                    diags.error_at(
                        path.clone(),
                        "Duplicate index column",
                        format!("{path}: {name:?} appears twice in this index; list each column once."),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::string(*s)).collect())
    }

    fn shape(columns: &[&str], key: &[&str], indexes: &[&[&str]]) -> Value {
        let column = |name: &str| {
            Value::Object(
                [("name".to_string(), Value::string(name)), ("type".to_string(), Value::string("text"))].into(),
            )
        };
        Value::Object(
            [
                ("column".to_string(), Value::List(columns.iter().map(|c| column(c)).collect())),
                ("primary_key".to_string(), strings(key)),
                ("indexes".to_string(), Value::List(indexes.iter().map(|i| strings(i)).collect())),
            ]
            .into(),
        )
    }

    fn problems(shape: &Value, column: &str) -> Vec<(String, String)> {
        let mut diags = Diagnostics::new();
        check(shape, Some(column), &mut diags);
        diags
            .iter()
            .map(|d| (d.path.as_ref().map(|p| p.to_string()).unwrap_or_default(), d.summary.clone()))
            .collect()
    }

    #[test]
    fn a_sound_shape_passes() {
        assert!(problems(&shape(&["id", "data", "ts"], &["id"], &[&["ts"], &["id", "ts"]]), "id").is_empty());
        assert!(problems(&shape(&["id"], &[], &[]), "id").is_empty());
    }

    #[test]
    fn each_mistake_is_reported_at_its_path() {
        let found = problems(&shape(&["id", "data", "id"], &["nope"], &[&["ts"], &[]]), "data");
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "create_if_missing.column[2].name",
                "create_if_missing.primary_key[0]",
                "create_if_missing.primary_key",
                "create_if_missing.indexes[0][0]",
                "create_if_missing.indexes[1]",
            ],
            "{found:?}"
        );
        let found = problems(&shape(&["id"], &["id"], &[]), "other");
        assert_eq!(found[0].0, "distribution_column");
        assert_eq!(found[1].1, "Primary key without the distribution column");
    }
}
