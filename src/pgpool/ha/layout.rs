//! Where a group lives on disk and which ports it uses.
//!
//! ```text
//! BASE/
//!   .shardform-pgpool-ha     marker: this directory holds a group (destroy deletes only such a directory)
//!   shardform.json           the configuration last applied, secrets left out (mode 0600): what import reads
//!   nodeN/                   one per node slot, N = 0..=standbys
//!     data/                  PGDATA (its postgresql.conf only includes ../postgresql.node.conf)
//!     run/                   unix socket directory
//!     postgresql.node.conf   every setting of this node: outside PGDATA, so a clone or rejoin keeps it
//!     pg_hba.conf            named by hba_file, for the same reason
//!     repmgr.conf, repmgrd.pid, repmgrd.log, postgres.log
//!     rejoin.lock, rejoin.log  the event hook's rewind and rejoin of this node after it lost a failover
//!     fenced                   this node was primary before a promotion and is not a standby again yet
//!   pgpool/
//!     pgpool.conf pcp.conf pool_hba.conf pool_passwd pcppass pgpool.pid pgpool.log
//!     run/                   pgpool's and pcp's sockets
//!     log/                   logdir: holds pgpool_status
//!     repmgr-event.sh        repmgr's event_notification_command: keeps pgpool's primary in step
//!                            (and, with a `citus` block, the coordinator's pg_dist_node)
//!     citus.pgpass           the coordinator's password, when the `citus` block has one
//!     citus-failover.log     what the event script did to the coordinator
//!   tls/                     with Citus: server.crt and server.key every node serves (ssl = on)
//! ```
//!
//! Ports are consecutive from `port_base`: pgpool, pcp, then node 0, 1, ...

use std::path::{Path, PathBuf};

pub const MARKER: &str = ".shardform-pgpool-ha";
/// The configuration last applied, for `terraform import` (see `configuration.rs` and `target/local/import.rs`).
pub const CONFIG_FILE: &str = "shardform.json";
/// Standbys a group may have; with the primary, slots 0..=MAX_STANDBYS.
pub const MAX_STANDBYS: usize = 8;
/// Ports a group takes from `port_base`.
pub const PORTS_PER_GROUP: u16 = 2 + MAX_STANDBYS as u16 + 1;
/// Every process listens on loopback only.
pub const HOST: &str = "127.0.0.1";
/// Unix socket paths are limited to 107 bytes; the longest we make is
/// `BASE/nodeN/run/.s.PGSQL.65535`.
pub const MAX_BASE_DIR_LEN: usize = 107 - "/node8/run/.s.PGSQL.65535".len();
/// The superuser's password is kept in pgpool's `pool_passwd`, which pgpool
/// reads at most 128 bytes of a field of (`TEXT` included); escapes can
/// double a password's length.
pub const MAX_PASSWORD_LEN: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub base: PathBuf,
    pub port_base: u16,
}

impl Layout {
    pub fn new(base: impl Into<PathBuf>, port_base: u16) -> Self {
        Layout {
            base: base.into(),
            port_base,
        }
    }

    pub fn marker(&self) -> PathBuf {
        self.base.join(MARKER)
    }

    pub fn config_file(&self) -> PathBuf {
        self.base.join(CONFIG_FILE)
    }

    pub fn node(&self, slot: usize) -> NodeLayout {
        let dir = self.base.join(node_name(slot));
        NodeLayout {
            slot,
            port: self.port_base + 2 + slot as u16,
            dir,
        }
    }

    /// Left while this provider has repmgrd paused (a node restart): a read
    /// shows the nodes unmonitored, and the next apply unpauses them.
    pub fn pause_marker(&self) -> PathBuf {
        self.base.join("repmgrd-paused-by-apply")
    }

    /// Where the self-signed certificate of a Citus group lives.
    pub fn tls_dir(&self) -> PathBuf {
        self.base.join("tls")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.tls_dir().join("server.crt")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }

    pub fn pgpool(&self) -> PgpoolLayout {
        PgpoolLayout {
            dir: self.base.join("pgpool"),
            port: self.port_base,
            pcp_port: self.port_base + 1,
        }
    }
}

/// repmgr's `node_name` and pgpool's `backend_application_name` of a slot.
pub fn node_name(slot: usize) -> String {
    format!("node{slot}")
}

/// repmgr node ids start at 1; pgpool backend ids at 0, as slots do.
pub fn repmgr_node_id(slot: usize) -> i32 {
    slot as i32 + 1
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    pub slot: usize,
    pub port: u16,
    pub dir: PathBuf,
}

impl NodeLayout {
    pub fn name(&self) -> String {
        node_name(self.slot)
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn node_conf(&self) -> PathBuf {
        self.dir.join("postgresql.node.conf")
    }
    pub fn hba(&self) -> PathBuf {
        self.dir.join("pg_hba.conf")
    }
    pub fn repmgr_conf(&self) -> PathBuf {
        self.dir.join("repmgr.conf")
    }
    pub fn repmgrd_pid(&self) -> PathBuf {
        self.dir.join("repmgrd.pid")
    }
    pub fn repmgrd_log(&self) -> PathBuf {
        self.dir.join("repmgrd.log")
    }
    pub fn postgres_log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
    /// Written when a promotion fences this node (an old primary), removed
    /// once it is a standby again: apply never starts it as a primary.
    pub fn fenced_marker(&self) -> PathBuf {
        self.dir.join("fenced")
    }
    /// Held while the event hook rejoins this node after a promotion, and
    /// while apply repairs it: one at a time.
    pub fn rejoin_lock(&self) -> PathBuf {
        self.dir.join("rejoin.lock")
    }
    pub fn postmaster_pid(&self) -> PathBuf {
        self.data().join("postmaster.pid")
    }
    pub fn has_data(&self) -> bool {
        self.data().join("PG_VERSION").is_file()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpoolLayout {
    pub dir: PathBuf,
    pub port: u16,
    pub pcp_port: u16,
}

impl PgpoolLayout {
    pub fn conf(&self) -> PathBuf {
        self.dir.join("pgpool.conf")
    }
    pub fn pcp_conf(&self) -> PathBuf {
        self.dir.join("pcp.conf")
    }
    pub fn hba(&self) -> PathBuf {
        self.dir.join("pool_hba.conf")
    }
    /// The superuser's password for pgpool, when the group has one.
    pub fn pool_passwd(&self) -> PathBuf {
        self.dir.join("pool_passwd")
    }
    pub fn pcppass(&self) -> PathBuf {
        self.dir.join("pcppass")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pgpool.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("pgpool.log")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn logdir(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn event_script(&self) -> PathBuf {
        self.dir.join("repmgr-event.sh")
    }
    pub fn event_log(&self) -> PathBuf {
        self.dir.join("repmgr-event.log")
    }
    pub fn citus_pgpass(&self) -> PathBuf {
        self.dir.join("citus.pgpass")
    }
    pub fn citus_log(&self) -> PathBuf {
        self.dir.join("citus-failover.log")
    }
    /// Serialises repoints when repmgr reports one promotion twice.
    pub fn citus_lock(&self) -> PathBuf {
        self.dir.join("citus-failover.lock")
    }
}

/// True when `path` holds only characters that need no quoting in a shell
/// word or a configuration value, so rendered commands stay simple and safe.
pub fn is_plain_path(path: &Path) -> bool {
    path.to_str().is_some_and(|s| {
        s.starts_with('/')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_consecutive_from_the_base() {
        let layout = Layout::new("/srv/g", 6000);
        assert_eq!(layout.pgpool().port, 6000);
        assert_eq!(layout.pgpool().pcp_port, 6001);
        assert_eq!(layout.node(0).port, 6002);
        assert_eq!(layout.node(MAX_STANDBYS).port, 6000 + PORTS_PER_GROUP - 1);
        assert_eq!(layout.node(1).data(), PathBuf::from("/srv/g/node1/data"));
    }

    #[test]
    fn plain_paths_only() {
        assert!(is_plain_path(Path::new("/tmp/a-b_c.d/e")));
        assert!(!is_plain_path(Path::new("relative")));
        assert!(!is_plain_path(Path::new("/tmp/with space")));
        assert!(!is_plain_path(Path::new("/tmp/quote'")));
    }
}
