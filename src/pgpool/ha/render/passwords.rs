//! Password files: pgpool's `pool_passwd` (the superuser's) and the
//! coordinator's libpq password file, both `:`-separated.

use crate::pgpool::ha::model::CitusSpec;
use crate::sql::Secret;

use super::names::SUPERUSER;

/// `pool_passwd`: the superuser's password in clear (`TEXT`), which pgpool
/// needs to answer the nodes' SCRAM for it, its health checks and its
/// streaming checks included. Fields are separated by `:`, so `\\` and `:`
/// are escaped with a backslash, as pgpool reads them. Mode 0600, read only
/// by the service user.
pub fn pool_passwd(password: &Secret) -> String {
    format!("{SUPERUSER}:TEXT{}\n", escape_field(password.expose()))
}

/// A field of a `:`-separated password file (libpq's pgpass, pgpool's
/// pool_passwd): `\\` and `:` escaped with a backslash.
pub fn escape_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The fields of such a line, escapes undone.
pub fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

/// The superuser's password from a `pool_passwd` written by [`pool_passwd`].
pub fn read_pool_password(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let fields = split_fields(line);
        let password = fields.get(1)?.strip_prefix("TEXT")?;
        (fields[0] == SUPERUSER).then(|| password.to_string())
    })
}

/// The coordinator's password file (mode 0600): `host:port:db:user:password`
/// with `\` and `:` escaped as libpq wants.
pub fn citus_pgpass(citus: &CitusSpec) -> Option<String> {
    let password = citus.password.as_deref()?;
    Some(format!(
        "{}:{}:{}:{}:{}\n",
        escape_field(&citus.coordinator_host),
        citus.coordinator_port,
        escape_field(&citus.database),
        escape_field(&citus.username),
        escape_field(password)
    ))
}
