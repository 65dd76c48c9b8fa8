//! Reading `terraform show -json` output, and comparing resource attributes
//! the way import verification does.

use std::collections::BTreeMap;

use serde_json::Value;

/// The `values` of the resource at `address`, searched in the root module and
/// all child modules.
pub fn find_resource_values<'a>(state: &'a Value, address: &str) -> Option<&'a Value> {
    resources(root_module(state)?)
        .find(|resource| resource["address"] == address)
        .map(|resource| &resource["values"])
}

/// Every resource address in the state, for error messages.
pub fn resource_addresses(state: &Value) -> Vec<String> {
    root_module(state)
        .map(|root| {
            resources(root)
                .filter_map(|resource| resource["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn root_module(state: &Value) -> Option<&Value> {
    state.get("values")?.get("root_module")
}

/// The resources of `module` and, depth first, of its child modules.
fn resources(module: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    let own = as_slice(module.get("resources")).iter();
    let nested = as_slice(module.get("child_modules"))
        .iter()
        .flat_map(resources);
    Box::new(own.chain(nested))
}

fn as_slice(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// One line per attribute path whose value differs between `expected` and
/// `actual` (missing counts as different), skipping paths under `ignore`.
/// Paths are dotted, with list indexes as segments: `nodes.0.port`.
pub fn attribute_differences(expected: &Value, actual: &Value, ignore: &[&str]) -> Vec<String> {
    let (expected, actual) = (flatten(expected), flatten(actual));
    let paths: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    paths
        .into_iter()
        .filter(|path| !is_ignored(path, ignore))
        .filter(|path| expected.get(*path) != actual.get(*path))
        .map(|path| {
            format!(
                "  {path}: expected {}, got {}",
                describe(expected.get(path)),
                describe(actual.get(path))
            )
        })
        .collect()
}

/// An ignore entry covers the path itself and everything below it.
fn is_ignored(path: &str, ignore: &[&str]) -> bool {
    ignore.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

fn describe(value: Option<&Value>) -> String {
    value.map_or_else(|| "<absent>".to_owned(), Value::to_string)
}

/// Leaf values by dotted path. Empty objects and lists are leaves too, so
/// that `[]` and a missing attribute stay distinguishable.
fn flatten(value: &Value) -> BTreeMap<String, Value> {
    let mut leaves = BTreeMap::new();
    if let Value::Object(attributes) = value {
        for (name, value) in attributes {
            flatten_into(name.clone(), value, &mut leaves);
        }
    }
    leaves
}

fn flatten_into(path: String, value: &Value, leaves: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                flatten_into(format!("{path}.{key}"), child, leaves);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.iter().enumerate() {
                flatten_into(format!("{path}.{index}"), child, leaves);
            }
        }
        leaf => {
            leaves.insert(path, leaf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state_with_module() -> Value {
        json!({"values": {"root_module": {
            "resources": [{"address": "citus_cluster.main", "values": {"id": "c1"}}],
            "child_modules": [{"address": "module.db", "resources": [
                {"address": "module.db.citus_distributed_table.t", "values": {"id": "t1"}}
            ]}]
        }}})
    }

    #[test]
    fn finds_resources_in_root_and_child_modules() {
        let state = state_with_module();
        assert_eq!(
            find_resource_values(&state, "citus_cluster.main"),
            Some(&json!({"id": "c1"}))
        );
        assert_eq!(
            find_resource_values(&state, "module.db.citus_distributed_table.t"),
            Some(&json!({"id": "t1"}))
        );
        assert_eq!(find_resource_values(&state, "citus_cluster.other"), None);
        assert_eq!(resource_addresses(&state).len(), 2);
    }

    #[test]
    fn empty_state_has_no_resources() {
        let state = json!({"format_version": "0.2"});
        assert_eq!(find_resource_values(&state, "a.b"), None);
        assert!(resource_addresses(&state).is_empty());
    }

    #[test]
    fn reports_changed_missing_and_nested_attributes() {
        let applied = json!({"id": "x", "port": 5432, "nodes": [{"name": "w1"}], "tags": []});
        let imported = json!({"id": "x", "port": 5433, "nodes": [{"name": "w2"}]});
        assert_eq!(
            attribute_differences(&applied, &imported, &[]),
            vec![
                "  nodes.0.name: expected \"w1\", got \"w2\"",
                "  port: expected 5432, got 5433",
                "  tags: expected [], got <absent>",
            ]
        );
    }

    #[test]
    fn ignore_covers_a_path_and_its_children_only() {
        let applied = json!({"password": "a", "nodes": [{"name": "w1"}], "nodes_count": 1});
        let imported = json!({"password": null, "nodes": [], "nodes_count": 2});
        assert_eq!(
            attribute_differences(&applied, &imported, &["password", "nodes"]),
            vec!["  nodes_count: expected 1, got 2"]
        );
    }
}
