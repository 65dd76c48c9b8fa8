//! PostgreSQL connections and SQL building shared by the providers.
//!
//! Values always travel as bind parameters; identifiers and the rare literal
//! that PostgreSQL cannot take as a parameter (utility statements) go through
//! [`quote_ident`] / [`quote_literal`]. No SQL is pasted from raw strings.

mod quote;
mod tls;

pub use quote::{quote_ident, quote_literal, quote_qualified};

use std::fmt;
use std::time::Duration;

use tokio_postgres::{Client, Config};

/// A password that never shows in logs, plans or error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<sensitive>")
    }
}

/// libpq's `sslmode`, with the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static [&'static str] =
        &["disable", "prefer", "require", "verify-ca", "verify-full"];

    /// The libpq spelling.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Everything needed to open a session on one PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub connect_timeout: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            host: "localhost".into(),
            port: 5432,
            database: "postgres".into(),
            user: "postgres".into(),
            password: None,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A failure to reach or use a server, worded for the user; never holds secrets.
#[derive(Debug, Clone)]
pub struct SqlError {
    pub message: String,
    /// The SQLSTATE code when the server answered with an error.
    pub code: Option<String>,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlError {}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let mut message = db.message().to_string();
                if let Some(detail) = db.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!(" Hint: {hint}"));
                }
                SqlError {
                    message,
                    code: Some(db.code().code().to_string()),
                }
            }
            None => SqlError {
                message: full_chain(&e),
                code: None,
            },
        }
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl ConnectionSettings {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens a session; the connection task runs on the current runtime.
    pub async fn connect(&self) -> Result<Client, SqlError> {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.user)
            .application_name("shardform")
            .connect_timeout(self.connect_timeout);
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        let connect = async {
            if self.sslmode == SslMode::Disable {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move { drop(connection.await) });
                Ok::<_, SqlError>(client)
            } else {
                config.ssl_mode(match self.sslmode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let tls = tls::connector(self)?;
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(async move { drop(connection.await) });
                Ok(client)
            }
        };
        match tokio::time::timeout(self.connect_timeout + Duration::from_secs(1), connect).await {
            Ok(result) => result,
            Err(_) => Err(SqlError {
                message: format!("timed out connecting to {}", self.address()),
                code: None,
            }),
        }
    }
}
