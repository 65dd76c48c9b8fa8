//! Acceptance tests: the real Terraform CLI drives the real provider
//! executables against real PostgreSQL / Citus instances.

mod harness;
mod harness_selftest;
mod protocol;
mod wire_fixtures;

mod citus_cluster;
mod citus_cluster_auth;
mod citus_ha_stack;
mod citus_distributed_table;
mod docs;
mod kubernetes_exec;
mod longhorn_volume;
mod pgpool_ha;
mod pgpool_ha_restart;
mod pgpool_ha_auth;
mod pgpool_ha_import;
mod pgpool_ha_kubernetes;
mod release;
