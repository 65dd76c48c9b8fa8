//! What the installed PostgreSQL knows about its parameters, from
//! `postgres --describe-config` (no server needed, allowed as root): which
//! names exist, and which take effect only at a restart (apply restarts the
//! nodes for those, see `target::local::restart`; the plan says so).

use std::collections::HashMap;
use std::process::Command;

use crate::cty::Value;
use crate::framework::{AttrPath, Diagnostics};

use super::render::PG_BINDIR;
use super::setting_values::{problem, Param};

/// Parameter name -> its context (`postmaster`, `sighup`, `user`, ...), type and range.
fn describe() -> Result<HashMap<String, Param>, String> {
    let output = Command::new(format!("{PG_BINDIR}/postgres"))
        .arg("--describe-config")
        .output()
        .map_err(|e| format!("cannot run {PG_BINDIR}/postgres --describe-config: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{PG_BINDIR}/postgres --describe-config failed: {}",
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(Param::parse_line)
        .collect())
}

/// Unknown names are errors at their path; a changed value of a parameter
/// that needs a restart gets a warning naming the nodes apply restarts.
/// Dotted names (`citus.shard_count`) belong to extensions and pass.
pub fn check(prior: &Value, planned: &Value, diags: &mut Diagnostics) {
    let Value::Map(settings) = planned.attr("postgresql_settings") else {
        return;
    };
    let known = match describe() {
        Ok(known) => known,
        Err(e) => {
            diags.warning("Cannot check PostgreSQL parameter names", e);
            return;
        }
    };
    let before = prior.attr("postgresql_settings");
    for (name, value) in settings {
        let path = AttrPath::root("postgresql_settings").key(name);
        if name.contains('.') {
            continue;
        }
        if let (Some(param), Some(text)) = (known.get(name), value.as_str()) {
            if let Some(problem) = problem(name, param, text) {
                diags.error_at(
                    path.clone(),
                    "Invalid PostgreSQL parameter value",
                    format!("{path}: {problem}"),
                );
                continue;
            }
        }
        match known.get(name).map(|p| p.context.as_str()) {
            None => diags.error_at(
                path,
                "Unknown PostgreSQL parameter",
                format!("PostgreSQL 15 has no parameter {name:?}; check its spelling."),
            ),
            Some("postmaster") if !prior.is_null() && before_value(before, name) != Some(value) => {
                diags.warning_at(path, "Restart needed", restart_detail(name, prior))
            }
            Some(_) => {}
        }
    }
    if prior.is_null() {
        return;
    }
    // A restart-only parameter removed goes back to its default: the same restart.
    if let Value::Map(before) = before {
        for name in before.keys().filter(|n| !settings.contains_key(*n)) {
            if known.get(name).map(|p| p.context.as_str()) == Some("postmaster") {
                diags.warning_at(
                    AttrPath::root("postgresql_settings"),
                    "Restart needed",
                    restart_detail(name, prior),
                );
            }
        }
    }
    // They make shared_preload_libraries.
    let libraries = planned.attr("preload_libraries");
    if libraries.is_wholly_known() && prior.attr("preload_libraries") != libraries {
        diags.warning_at(
            AttrPath::root("preload_libraries"),
            "Restart needed",
            restart_detail("shared_preload_libraries", prior),
        );
    }
}

/// What apply does for a restart-only parameter, with the nodes of the prior state.
fn restart_detail(name: &str, prior: &Value) -> String {
    let primary = prior.attr("primary").as_str();
    let standbys: Vec<&str> = prior
        .attr("nodes")
        .as_elements()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.attr("name").as_str())
        .filter(|n| Some(*n) != primary)
        .collect();
    let standbys = match standbys.as_slice() {
        [] => String::new(),
        names => format!(
            "the standbys ({}) one at a time, each until it streams again, then ",
            names.join(", ")
        ),
    };
    let primary = match primary {
        Some(p) => format!("the primary ({p})"),
        None => "the primary".to_string(),
    };
    format!(
        "{name} takes effect only when PostgreSQL restarts. Apply writes it, reloads, and restarts every node that then reports it pending \
         (pg_settings.pending_restart): {standbys}{primary} with repmgrd paused, so no failover happens and the primary stays the same node. \
         Writes through the endpoint pause for a few seconds while the primary restarts; sessions through pgpool to a restarting node are cut."
    )
}

fn before_value<'a>(settings: &'a Value, name: &str) -> Option<&'a Value> {
    match settings {
        Value::Map(m) => m.get(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Severity;

    fn group(settings: &[(&str, &str)]) -> Value {
        let map = settings
            .iter()
            .map(|(k, v)| (k.to_string(), Value::string(*v)))
            .collect();
        let node = |name: &str| Value::Object([("name".to_string(), Value::string(name))].into());
        Value::Object(
            [
                ("postgresql_settings".to_string(), Value::Map(map)),
                ("primary".to_string(), Value::string("node1")),
                (
                    "nodes".to_string(),
                    Value::List(vec![node("node0"), node("node1"), node("node2")]),
                ),
            ]
            .into(),
        )
    }

    #[test]
    fn unknown_names_fail_and_restart_only_changes_warn() {
        let prior = group(&[("shared_buffers", "128MB"), ("work_mem", "4MB")]);
        let planned = group(&[
            ("shared_buffers", "256MB"),
            ("work_mem", "8MB"),
            ("wrok_mem", "1MB"),
            ("citus.shard_count", "8"),
        ]);
        let mut diags = Diagnostics::new();
        check(&prior, &planned, &mut diags);
        let found: Vec<(Severity, String, String)> = diags
            .iter()
            .map(|d| {
                (
                    d.severity,
                    d.summary.clone(),
                    d.path.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    Severity::Warning,
                    "Restart needed".into(),
                    "postgresql_settings[\"shared_buffers\"]".into()
                ),
                (
                    Severity::Error,
                    "Unknown PostgreSQL parameter".into(),
                    "postgresql_settings[\"wrok_mem\"]".into()
                ),
            ]
        );
        let detail = &diags.iter().next().unwrap().detail;
        assert!(
            detail.contains("the standbys (node0, node2) one at a time")
                && detail.contains("then the primary (node1) with repmgrd paused"),
            "{detail}"
        );
        assert!(
            detail.contains("Writes through the endpoint pause"),
            "{detail}"
        );
    }
}
