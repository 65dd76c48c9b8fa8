//! How the provider reaches a coordinator: provider-level defaults merged with
//! a resource's `connection` block, attribute by attribute.

use std::sync::RwLock;
use std::time::Duration;

use crate::cty::{Type, Value};
use crate::framework::validators::{connect_host, int_between, not_blank, one_of, port};
use crate::framework::{Attribute, Block, NestedBlock};
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

pub fn block() -> NestedBlock {
    let mut block = Block::new(
        "How the provider connects to the coordinator; overrides the provider's settings.",
    );
    block.attributes = attributes();
    NestedBlock::single("connection", block)
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
