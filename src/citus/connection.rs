//! How the provider reaches a coordinator: a resource's `connection` block,
//! then the provider block, then libpq's environment variables (`PGHOST`,
//! `PGPASSWORD`, ...), then libpq's defaults, attribute by attribute.

use std::sync::RwLock;
use std::time::Duration;

use crate::cty::{Type, Value};
use crate::framework::validators::{connect_host, int_between, not_blank, one_of, port};
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, NestedBlock};
use crate::sql::{ConnectionSettings, Secret, SslMode};

/// The connection attributes, shared by the provider block and `connection` blocks.
pub fn attributes() -> Vec<Attribute> {
    vec![
        Attribute::optional("host", Type::String)
            .describe("Host name or address the provider uses to reach the coordinator (or a Unix-socket directory).")
            .validate(connect_host()),
        Attribute::optional("port", Type::Number).describe("Port of the coordinator. Defaults to 5432.").validate(port()),
        Attribute::optional("database", Type::String)
            .describe("Database that holds the Citus extension. Defaults to `postgres`.")
            .validate(not_blank()),
        Attribute::optional("username", Type::String)
            .describe("Superuser to connect as. Defaults to `postgres`.")
            .validate(not_blank()),
        Attribute::optional("password", Type::String).sensitive().describe("Password of `username`."),
        Attribute::optional("sslmode", Type::String)
            .describe("libpq `sslmode`: `disable`, `prefer` (default), `require`, `verify-ca` or `verify-full`.")
            .validate(one_of(SslMode::NAMES)),
        Attribute::optional("sslrootcert", Type::String)
            .describe("PEM file of the certificate authorities trusted for `verify-ca` and `verify-full`."),
        Attribute::optional("sslcert", Type::String).describe("PEM file of the client certificate."),
        Attribute::optional("sslkey", Type::String).describe("PEM file of the client certificate's private key."),
        Attribute::optional("connect_timeout", Type::Number)
            .describe("Seconds to wait for a connection. Defaults to 10.")
            .validate(int_between(1, 3600)),
    ]
}

/// The resources' own connection block. Not `connection`: Terraform keeps a
/// block of that name in every resource for provisioners and never passes it
/// to the provider.
pub const BLOCK_NAME: &str = "coordinator_connection";

pub fn block() -> NestedBlock {
    let mut block = Block::new(
        "How the provider connects to the coordinator; overrides the provider's settings.",
    );
    block.attributes = attributes();
    NestedBlock::single(BLOCK_NAME, block)
}

/// The libpq environment variable behind each connection attribute, as the
/// PostgreSQL provider users know them.
const LIBPQ_ENVIRONMENT: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("database", "PGDATABASE"),
    ("username", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
];

/// The provider block with libpq's environment filling what it leaves null
/// (`lookup` reads the environment). A variable's value is checked as the
/// attribute would be, and reported by variable name, never by value.
pub fn with_libpq_environment(
    config: &Value,
    lookup: impl Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Value {
    let Value::Object(mut fields) = config.clone() else {
        return config.clone();
    };
    let schema = attributes();
    for (name, variable) in LIBPQ_ENVIRONMENT {
        if !fields.get(*name).is_none_or(Value::is_null) {
            continue; // explicit attributes win
        }
        let Some(text) = lookup(variable).filter(|t| !t.is_empty()) else {
            continue;
        };
        let attribute = schema.iter().find(|a| a.name == *name).expect("a connection attribute");
        let value = if attribute.ty == Type::Number {
            match text.trim().parse::<i64>() {
                Ok(n) => Value::int(n),
                Err(_) => {
                    diags.error(
                        format!("Invalid {variable}"),
                        format!("The environment variable {variable} (for `{name}`) must be a whole number."),
                    );
                    continue;
                }
            }
        } else {
            Value::string(text)
        };
        let mut problems = Diagnostics::new();
        for validator in &attribute.validators {
            validator.validate(&value, &AttrPath::root(name), &mut problems);
        }
        if problems.has_errors() {
            let detail = if *name == "password" {
                format!("The environment variable {variable} is not a usable password.")
            } else {
                problems.iter().map(|d| d.detail.clone()).collect::<Vec<_>>().join(" ")
            };
            diags.error(format!("Invalid {variable}"), format!("{detail} (from the environment variable {variable})"));
            continue;
        }
        fields.insert(name.to_string(), value);
    }
    Value::Object(fields)
}

/// A client certificate needs its key and a key its certificate: refused at
/// plan rather than at the first connection.
pub fn validate_pairs(block: &Value, path: Option<&AttrPath>, diags: &mut Diagnostics) {
    let (cert, key) = (block.attr("sslcert"), block.attr("sslkey"));
    if !cert.is_wholly_known() || !key.is_wholly_known() || cert.is_null() == key.is_null() {
        return;
    }
    let (missing, given) = if cert.is_null() { ("sslcert", "sslkey") } else { ("sslkey", "sslcert") };
    let at = match path {
        Some(path) => path.attr(given),
        None => AttrPath::root(given),
    };
    diags.error_at(
        at,
        format!("{given} without {missing}"),
        format!("A client certificate needs both `sslcert` and `sslkey`; set `{missing}` too, or remove `{given}`."),
    );
}

/// The provider block's values, set by `Configure`.
#[derive(Default)]
pub struct ConnectionDefaults(RwLock<Value>);

impl ConnectionDefaults {
    pub fn set(&self, config: &Value) {
        *self.0.write().expect("connection defaults lock") = config.clone();
    }

    /// Whether every provider-level value is known (some may come from
    /// resources not created yet, and are known only at apply).
    pub fn is_known(&self) -> bool {
        self.0
            .read()
            .expect("connection defaults lock")
            .is_wholly_known()
    }

    /// Settings for the coordinator: the resource's `connection` block first,
    /// then the provider's, then libpq-like defaults. `fallback_host` and
    /// `fallback_port` (the coordinator's registered address) apply when
    /// neither names a host or port.
    pub fn resolve(
        &self,
        connection: &Value,
        fallback_host: &str,
        fallback_port: u16,
    ) -> ConnectionSettings {
        let provider = self.0.read().expect("connection defaults lock").clone();
        let pick = |name: &str| -> Value {
            let own = connection.attr(name);
            if own.is_null() {
                provider.attr(name).clone()
            } else {
                own.clone()
            }
        };
        let string = |name: &str| pick(name).as_str().map(str::to_string);
        let defaults = ConnectionSettings::default();
        ConnectionSettings {
            host: string("host").unwrap_or_else(|| fallback_host.to_string()),
            port: pick("port")
                .as_i64()
                .map(|p| p as u16)
                .unwrap_or(fallback_port),
            database: string("database").unwrap_or(defaults.database),
            user: string("username").unwrap_or(defaults.user),
            password: string("password").map(Secret::new),
            sslmode: string("sslmode")
                .and_then(|s| SslMode::parse(&s))
                .unwrap_or_default(),
            sslrootcert: string("sslrootcert"),
            sslcert: string("sslcert"),
            sslkey: string("sslkey"),
            connect_timeout: pick("connect_timeout")
                .as_i64()
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(defaults.connect_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(fields: &[(&str, Value)]) -> Value {
        let mut object: std::collections::BTreeMap<String, Value> =
            attributes().iter().map(|a| (a.name.to_string(), Value::Null)).collect();
        for (k, v) in fields {
            object.insert(k.to_string(), v.clone());
        }
        Value::Object(object)
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn libpq_variables_fill_what_the_provider_block_leaves_out() {
        let mut diags = Diagnostics::new();
        let vars = &[("PGHOST", "db.internal"), ("PGPORT", "6432"), ("PGPASSWORD", "pw"), ("PGUSER", "ignored"), ("PGSSLMODE", "require")];
        let merged = with_libpq_environment(&config(&[("username", Value::string("citus_admin"))]), env(vars), &mut diags);
        assert_eq!(diags.iter().count(), 0);
        assert_eq!(merged.attr("host").as_str(), Some("db.internal"));
        assert_eq!(merged.attr("port").as_i64(), Some(6432));
        assert_eq!(merged.attr("password").as_str(), Some("pw"));
        assert_eq!(merged.attr("sslmode").as_str(), Some("require"));
        // The explicit attribute wins.
        assert_eq!(merged.attr("username").as_str(), Some("citus_admin"));
        assert!(merged.attr("database").is_null());
    }

    #[test]
    fn bad_libpq_variables_are_named_without_their_values() {
        let mut diags = Diagnostics::new();
        let vars = &[("PGPORT", "70000"), ("PGSSLMODE", "sometimes"), ("PGCONNECT_TIMEOUT", "soon")];
        let merged = with_libpq_environment(&config(&[]), env(vars), &mut diags);
        let summaries: Vec<&str> = diags.iter().map(|d| d.summary.as_str()).collect();
        assert_eq!(summaries, ["Invalid PGPORT", "Invalid PGSSLMODE", "Invalid PGCONNECT_TIMEOUT"]);
        assert!(merged.attr("port").is_null() && merged.attr("sslmode").is_null());
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let mut diags = Diagnostics::new();
        validate_pairs(&config(&[("sslcert", Value::string("c.pem"))]), Some(&AttrPath::root(BLOCK_NAME)), &mut diags);
        let d = diags.iter().next().expect("refused");
        assert_eq!(d.summary, "sslcert without sslkey");
        assert_eq!(d.path, Some(AttrPath::root(BLOCK_NAME).attr("sslcert")));
        let mut diags = Diagnostics::new();
        validate_pairs(&config(&[("sslcert", Value::string("c")), ("sslkey", Value::string("k"))]), None, &mut diags);
        validate_pairs(&config(&[("sslkey", Value::Unknown)]), None, &mut diags);
        assert_eq!(diags.iter().count(), 0);
    }
}
