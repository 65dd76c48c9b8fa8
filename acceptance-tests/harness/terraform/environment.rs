//! The environment every Terraform process of the harness gets: the
//! developer's `TF_*` variables removed, except logging and debugging ones,
//! so that a stray TF_CLI_ARGS, TF_DATA_DIR or TF_PLUGIN_CACHE_DIR cannot
//! change a test.

use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

const PASSED_THROUGH: &[&str] = &[
    "TF_LOG",
    "TF_LOG_PATH",
    "TF_LOG_CORE",
    "TF_LOG_PROVIDER",
    // Lets a developer attach a provider running under a debugger.
    "TF_REATTACH_PROVIDERS",
];

/// A command running `terraform` in the harness's environment.
pub fn terraform_command(terraform: &Path) -> Command {
    let mut cmd = Command::new(terraform);
    for name in foreign_tf_variables() {
        cmd.env_remove(name);
    }
    cmd.env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1");
    cmd
}

/// `TF_*` variables in our environment that Terraform must not see.
fn foreign_tf_variables() -> Vec<OsString> {
    env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("TF_") && !PASSED_THROUGH.contains(&name.as_ref())
        })
        .collect()
}
