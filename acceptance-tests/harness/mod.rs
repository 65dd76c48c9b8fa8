//! Test-only harness for the acceptance tests: drives the real Terraform CLI
//! against the providers built by Cargo, and runs real PostgreSQL (and Citus)
//! instances for them to manage.
//!
//! - [`terraform`]: the Terraform binary, a per-test working directory with a
//!   provider mirror, and the checks serious providers run (perpetual-diff
//!   guard, import verification);
//! - [`postgres`]: throwaway PostgreSQL 15 instances and Citus clusters;
//! - [`process`], [`tempdir`], [`wait`]: the small utilities both build on.

// Each acceptance test uses a different slice of the harness.
#![allow(dead_code)]

pub mod kube;
pub mod postgres;
pub mod process;
pub mod tempdir;
pub mod terraform;
pub mod wait;

// Re-exports for the tests; not every test binary build uses all of them.
#[allow(unused_imports)]
pub use postgres::{citus_installed, require_citus, start_instances, CitusCluster, PgInstance, PgOptions};
#[allow(unused_imports)]
pub use terraform::{
    keep_requested, provider_binaries, required_providers_hcl, terraform_binary, terraform_version,
    terraform_version_label, ProviderBinary,
    TfOutput, Workdir,
};
#[allow(unused_imports)]
pub use wait::wait_until;
