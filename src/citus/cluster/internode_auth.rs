//! Passwords Citus uses for its own connections between nodes (the
//! coordinator adding a worker, shard moves, distributed queries): rows of
//! `pg_dist_authinfo`, one per role for every other node (`nodeid` 0) and
//! one for loopback connections (`nodeid` -1).
//!
//! Citus reads the table on the node that opens the connection and never
//! propagates it, so the rows are written on the coordinator and on every
//! worker (read replicas get them through replication). They are written
//! before any worker is added: `citus_add_node` already needs them.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::cty::{Type, Value};
use crate::framework::validators::{NameLike, Validator};
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, NestedBlock};
use crate::sql::{Secret, SqlError};

pub const BLOCK_NAME: &str = "internode_auth";

/// Every other node, and the node itself reached over loopback.
const NODE_IDS: [i32; 2] = [0, -1];

fn role_name() -> NameLike {
    NameLike {
        max_len: 63,
        allowed: |c| !c.is_control(),
        explain: "printable characters",
    }
}

pub fn block() -> NestedBlock {
    let block = Block::new(
        "A password Citus uses when it connects between nodes as this role (the block's label), \
         for nodes that require passwords (`scram-sha-256` or `md5` in `pg_hba.conf`). Written as \
         `pg_dist_authinfo` rows on the coordinator and on every worker, for all nodes and for \
         loopback; the role must exist on each of them. A node whose row is missing or different \
         shows as drift. Removing the block deletes the rows.",
    )
    .attribute(
        Attribute::optional("password", Type::String)
            .describe("The role's password. Stored in state (marked sensitive); see `password_wo` to keep it out.")
            .sensitive(),
    )
    .attribute(
        Attribute::optional("password_wo", Type::String)
            .describe(
                "Write-only form of `password` (Terraform 1.11 and later): never stored in plan or state. \
                 Change `password_wo_version` to make apply write the current value. Drift then shows \
                 only for rows that are missing, not for rows that differ.",
            )
            .write_only(),
    )
    .attribute(
        Attribute::optional("password_wo_version", Type::Number)
            .describe("Any number; a change makes apply write the current `password_wo`."),
    );
    NestedBlock::map(BLOCK_NAME, block)
}

/// One role's password as a plan asks for it.
#[derive(Debug, Clone)]
pub struct RolePassword {
    pub role: String,
    pub password: Secret,
}

/// The roles and passwords of a planned (or config) value; a role whose
/// password is null (a write-only one outside apply) is left out.
pub fn from_value(value: &Value) -> Vec<RolePassword> {
    let Value::Map(roles) = value.attr(BLOCK_NAME) else {
        return Vec::new();
    };
    roles
        .iter()
        .filter_map(|(role, entry)| {
            let password = entry.attr("password").as_str().or_else(|| entry.attr("password_wo").as_str())?;
            Some(RolePassword {
                role: role.clone(),
                password: Secret::new(password),
            })
        })
        .collect()
}

/// The roles a value names.
pub fn roles(value: &Value) -> BTreeSet<String> {
    match value.attr(BLOCK_NAME) {
        Value::Map(roles) => roles.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let Value::Map(roles) = config.attr(BLOCK_NAME) else {
        return;
    };
    for (role, entry) in roles {
        let path = AttrPath::root(BLOCK_NAME).key(role);
        role_name().validate(&Value::string(role.clone()), &path, diags);
        let (plain, write_only) = (entry.attr("password"), entry.attr("password_wo"));
        if !plain.is_null() && !write_only.is_null() {
            diags.error_at(
                path.attr("password_wo"),
                "Conflicting passwords",
                format!("{path}: set either `password` or its write-only form `password_wo`, not both."),
            );
        } else if plain.is_null() && write_only.is_null() {
            diags.error_at(
                path.attr("password"),
                "Missing password",
                format!("{path}: set `password` or `password_wo`, the password of role {role:?} on every node."),
            );
        }
        for (name, value) in [("password", plain), ("password_wo", write_only)] {
            if value.as_str().is_some_and(str::is_empty) {
                diags.error_at(
                    path.attr(name),
                    "Empty password",
                    format!(
                        "{}: an empty password cannot authenticate; leave the block out for nodes that do not ask for one.",
                        path.attr(name)
                    ),
                );
            }
        }
    }
}

/// The `authinfo` text for a password: a libpq conninfo with the value
/// quoted, so no character of the password can add another keyword.
pub fn authinfo(password: &Secret) -> String {
    let mut quoted = String::with_capacity(password.expose().len() + 12);
    quoted.push_str("password='");
    for c in password.expose().chars() {
        if matches!(c, '\'' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// `(role, nodeid) -> authinfo` of the rows this resource manages for `roles`.
pub async fn read(client: &Client, roles: &[String]) -> Result<BTreeMap<(String, i32), String>, SqlError> {
    let node_ids = NODE_IDS.to_vec();
    let rows = client
        .query(
            "SELECT rolename::text, nodeid, authinfo FROM pg_catalog.pg_dist_authinfo \
             WHERE rolename::text = ANY($1) AND nodeid = ANY($2)",
            &[&roles, &node_ids],
        )
        .await?;
    Ok(rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect())
}

/// Whether a node's rows give `role` exactly `password`.
fn in_sync(rows: &BTreeMap<(String, i32), String>, role: &str, password: &Secret) -> bool {
    let wanted = authinfo(password);
    NODE_IDS
        .iter()
        .all(|id| rows.get(&(role.to_string(), *id)) == Some(&wanted))
}

/// Whether a node has both rows of `role`, whatever their passwords.
fn present(rows: &BTreeMap<(String, i32), String>, role: &str) -> bool {
    NODE_IDS.iter().all(|id| rows.contains_key(&(role.to_string(), *id)))
}

/// Why a node refused its rows. Never carries the password: the server's
/// detail for a constraint failure would quote the row, so only the message
/// is kept.
#[derive(Debug)]
pub struct WriteError {
    pub role: String,
    pub message: String,
}

/// Writes the rows for `wanted` and deletes those of `dropped` roles, in one
/// transaction per node.
pub async fn apply(client: &mut Client, wanted: &[RolePassword], dropped: &BTreeSet<String>) -> Result<(), WriteError> {
    let roles: Vec<String> = wanted.iter().map(|r| r.role.clone()).chain(dropped.iter().cloned()).collect();
    let current = read(client, &roles).await.map_err(|e| WriteError {
        role: roles.first().cloned().unwrap_or_default(),
        message: e.message,
    })?;
    let stale: Vec<&RolePassword> = wanted.iter().filter(|r| !in_sync(&current, &r.role, &r.password)).collect();
    let gone: Vec<&String> = dropped
        .iter()
        .filter(|role| !wanted.iter().any(|r| &r.role == *role))
        .filter(|role| NODE_IDS.iter().any(|id| current.contains_key(&((*role).clone(), *id))))
        .collect();
    if stale.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let node_ids = NODE_IDS.to_vec();
    let failed = |role: &str| {
        let role = role.to_string();
        move |e: tokio_postgres::Error| WriteError {
            role,
            message: e.as_db_error().map(|db| db.message().to_string()).unwrap_or_else(|| e.to_string()),
        }
    };
    let transaction = client.transaction().await.map_err(failed(""))?;
    for entry in stale {
        // Checked first: a failed role_exists constraint would quote the row, password included.
        let exists: bool = transaction
            .query_one("SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1)", &[&entry.role])
            .await
            .map_err(failed(&entry.role))?
            .get(0);
        if !exists {
            return Err(WriteError {
                role: entry.role.clone(),
                message: format!("role {:?} does not exist on this node; create it there first", entry.role),
            });
        }
        let text = authinfo(&entry.password);
        transaction
            .execute(
                "DELETE FROM pg_catalog.pg_dist_authinfo WHERE rolename = $1 AND nodeid = ANY($2)",
                &[&entry.role, &node_ids],
            )
            .await
            .map_err(failed(&entry.role))?;
        transaction
            .execute(
                "INSERT INTO pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo) SELECT id, $1, $2 FROM unnest($3::int[]) AS id",
                &[&entry.role, &text, &node_ids],
            )
            .await
            .map_err(failed(&entry.role))?;
    }
    for role in gone {
        transaction
            .execute(
                "DELETE FROM pg_catalog.pg_dist_authinfo WHERE rolename = $1 AND nodeid = ANY($2)",
                &[role, &node_ids],
            )
            .await
            .map_err(failed(role))?;
    }
    transaction.commit().await.map_err(failed(""))
}

/// The state's view of each role over the nodes read: as the prior state has
/// it when every node agrees with it; otherwise the password (or, for a
/// write-only one, its version) is null, so the plan shows the repair.
pub fn merge(prior: &Value, per_node: &[BTreeMap<(String, i32), String>]) -> Value {
    let Value::Map(roles) = prior.attr(BLOCK_NAME) else {
        return Value::Map(BTreeMap::new());
    };
    let entries = roles
        .iter()
        .map(|(role, entry)| {
            let mut fields = entry.as_object().cloned().unwrap_or_default();
            match entry.attr("password").as_str() {
                Some(password) => {
                    let password = Secret::new(password);
                    if !per_node.iter().all(|rows| in_sync(rows, role, &password)) {
                        fields.insert("password".into(), Value::Null);
                    }
                }
                None => {
                    if !per_node.iter().all(|rows| present(rows, role)) {
                        fields.insert("password_wo_version".into(), Value::Null);
                    }
                }
            }
            fields.insert("password_wo".into(), Value::Null);
            (role.clone(), Value::Object(fields))
        })
        .collect();
    Value::Map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(password: Option<&str>, version: Option<i64>) -> Value {
        Value::Object(
            [
                ("password".to_string(), password.map(Value::string).unwrap_or(Value::Null)),
                ("password_wo".to_string(), Value::Null),
                ("password_wo_version".to_string(), version.map(Value::int).unwrap_or(Value::Null)),
            ]
            .into(),
        )
    }

    fn state(role: &str, entry: Value) -> Value {
        Value::Object([(BLOCK_NAME.to_string(), Value::Map([(role.to_string(), entry)].into()))].into())
    }

    fn role_of(merged: &Value, role: &str) -> Value {
        match merged {
            Value::Map(roles) => roles[role].clone(),
            other => panic!("not a map: {other:?}"),
        }
    }

    fn rows(role: &str, text: &str) -> BTreeMap<(String, i32), String> {
        NODE_IDS.iter().map(|id| ((role.to_string(), *id), text.to_string())).collect()
    }

    #[test]
    fn authinfo_quotes_the_password_so_it_adds_no_keyword() {
        assert_eq!(authinfo(&Secret::new("s3cret")), "password='s3cret'");
        assert_eq!(
            authinfo(&Secret::new("a' sslkey='/etc/x\\")),
            "password='a\\' sslkey=\\'/etc/x\\\\'"
        );
    }

    #[test]
    fn a_node_with_another_password_or_none_shows_as_drift() {
        let prior = state("app", entry(Some("pw"), None));
        let good = rows("app", &authinfo(&Secret::new("pw")));
        assert_eq!(merge(&prior, &[good.clone(), good.clone()]), prior.attr(BLOCK_NAME).clone());
        let other = rows("app", &authinfo(&Secret::new("old")));
        assert!(role_of(&merge(&prior, &[good.clone(), other]), "app").attr("password").is_null());
        assert!(role_of(&merge(&prior, &[good, BTreeMap::new()]), "app").attr("password").is_null());
    }

    #[test]
    fn a_write_only_password_shows_drift_only_for_missing_rows() {
        let prior = state("app", entry(None, Some(1)));
        let any = rows("app", "password='whatever'");
        assert_eq!(role_of(&merge(&prior, std::slice::from_ref(&any)), "app").attr("password_wo_version"), &Value::int(1));
        let mut half = any;
        half.remove(&("app".to_string(), -1));
        assert!(role_of(&merge(&prior, &[half]), "app").attr("password_wo_version").is_null());
    }

    #[test]
    fn a_role_needs_exactly_one_password() {
        for (password, write_only, expected) in [
            (None, None, Some("Missing password")),
            (Some("a"), Some("b"), Some("Conflicting passwords")),
            (Some(""), None, Some("Empty password")),
            (Some("a"), None, None),
            (None, Some("b"), None),
        ] {
            let mut e = entry(password, None);
            if let (Some(w), Some(fields)) = (write_only, e.as_object_mut()) {
                fields.insert("password_wo".into(), Value::string(w));
            }
            let mut diags = Diagnostics::new();
            validate(&state("app", e), &mut diags);
            let summaries: Vec<String> = diags.iter().map(|d| d.summary.clone()).collect();
            assert_eq!(summaries.first().map(String::as_str), expected, "{password:?} {write_only:?}");
        }
    }
}
