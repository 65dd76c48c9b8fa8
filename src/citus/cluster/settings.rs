//! Citus settings the cluster owns: written with `ALTER SYSTEM` on the
//! coordinator and every worker, read back from `postgresql.auto.conf`
//! (`pg_file_settings`) so a setting lost on one node, say by a failover to a
//! standby that never had it, shows as drift.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::cty::Value;
use crate::framework::{AttrPath, Diagnostics};
use crate::sql::{quote_ident, quote_literal, SqlError};

/// `citus.` followed by a lower-case identifier: the only names accepted.
pub fn is_citus_setting(name: &str) -> bool {
    name.strip_prefix("citus.").is_some_and(|rest| {
        !rest.is_empty()
            && rest.starts_with(|c: char| c.is_ascii_lowercase())
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let Value::Map(settings) = config.attr("settings") else {
        return;
    };
    for name in settings.keys() {
        if !is_citus_setting(name) {
            diags.error_at(
                AttrPath::root("settings").key(name),
                "Not a Citus setting",
                format!("settings may only hold citus.* parameters such as \"citus.max_background_task_executors_per_node\", got {name:?}."),
            );
        }
    }
}

pub fn from_value(value: &Value) -> BTreeMap<String, String> {
    match value.attr("settings") {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `"citus"."name"`: each part quoted, as `ALTER SYSTEM` takes no parameters.
fn quoted_name(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The citus.* values this node has in `postgresql.auto.conf` (whether
/// applied yet or waiting for a restart).
pub async fn read(client: &Client) -> Result<BTreeMap<String, String>, SqlError> {
    let rows = client
        .query(
            "SELECT name, setting FROM pg_catalog.pg_file_settings \
             WHERE sourcefile LIKE '%postgresql.auto.conf' AND name LIKE 'citus.%'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Writes `wanted`, resets names this resource set before but no longer
/// wants, and reloads when anything changed.
pub async fn apply(
    client: &Client,
    wanted: &BTreeMap<String, String>,
    dropped: &BTreeSet<String>,
) -> Result<(), SqlError> {
    let current = read(client).await?;
    let mut statements = Vec::new();
    for (name, value) in wanted {
        if current.get(name) != Some(value) {
            statements.push(format!(
                "ALTER SYSTEM SET {} TO {}",
                quoted_name(name),
                quote_literal(value)
            ));
        }
    }
    for name in dropped {
        if !wanted.contains_key(name) && current.contains_key(name) {
            statements.push(format!("ALTER SYSTEM RESET {}", quoted_name(name)));
        }
    }
    if statements.is_empty() {
        return Ok(());
    }
    for statement in &statements {
        client.batch_execute(statement).await?;
    }
    client
        .batch_execute("SELECT pg_catalog.pg_reload_conf()")
        .await?;
    Ok(())
}

/// The state's view of the owned settings over all nodes read: a value every
/// node agrees on; otherwise the first deviating value (or none), so the plan
/// shows the repair.
pub fn merge(
    owned: &BTreeSet<String>,
    per_node: &[BTreeMap<String, String>],
    wanted: &BTreeMap<String, String>,
) -> Value {
    let mut merged = BTreeMap::new();
    for name in owned {
        let values: Vec<Option<&String>> = per_node.iter().map(|n| n.get(name)).collect();
        let deviating = values
            .iter()
            .find(|v| v.map(String::as_str) != wanted.get(name).map(String::as_str));
        let shown = match deviating {
            Some(v) => v.cloned(),
            None => wanted.get(name).cloned(),
        };
        if let Some(v) = shown {
            merged.insert(name.clone(), Value::string(v));
        }
    }
    Value::Map(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_citus_names_pass() {
        assert!(is_citus_setting(
            "citus.max_background_task_executors_per_node"
        ));
        assert!(!is_citus_setting("work_mem"));
        assert!(!is_citus_setting("citus."));
        assert!(!is_citus_setting("citus.x; DROP TABLE t"));
        assert_eq!(
            quoted_name("citus.shard_count"),
            "\"citus\".\"shard_count\""
        );
    }

    #[test]
    fn a_node_missing_a_setting_shows_as_drift() {
        let wanted: BTreeMap<String, String> = [("citus.a".to_string(), "1".to_string())].into();
        let owned: BTreeSet<String> = wanted.keys().cloned().collect();
        let agreeing = vec![wanted.clone(), wanted.clone()];
        assert_eq!(
            merge(&owned, &agreeing, &wanted),
            Value::Map([("citus.a".into(), Value::string("1"))].into())
        );
        let one_lost = vec![wanted.clone(), BTreeMap::new()];
        assert_eq!(
            merge(&owned, &one_lost, &wanted),
            Value::Map(BTreeMap::new())
        );
    }
}
