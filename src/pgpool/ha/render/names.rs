//! What every file of a group names (programs, the superuser, repmgr's
//! database, the PCP user) and how a value is quoted in them.

/// PostgreSQL's programs (initdb, pg_ctl, repmgr, repmgrd).
pub const PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";
pub const PGPOOL_BIN: &str = "/usr/sbin/pgpool";
pub const PCP_BINDIR: &str = "/usr/sbin";
/// The superuser every tool connects as (initdb's bootstrap user).
pub const SUPERUSER: &str = "postgres";
/// repmgr keeps its metadata in a database of its own.
pub const REPMGR_DB: &str = "repmgr";
/// The PCP user the provider and the event script use.
pub const PCP_USER: &str = "shardform";

/// A word for `sh`: in single quotes, each `'` written as `'\''`.
pub fn quote_sh(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A value in single quotes for postgresql.conf, pgpool.conf and repmgr.conf.
pub fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}
