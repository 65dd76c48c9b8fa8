//! Installing the providers Cargo built where Terraform 1.0.3 finds them: a
//! filesystem mirror selected by a CLI config file (`TF_CLI_CONFIG_FILE`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const PROVIDER_HOST: &str = "registry.terraform.io";
pub const PROVIDER_NAMESPACE: &str = "shardform";
/// The providers are versioned with the crate.
pub const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A provider executable to install, e.g. type "citus" for
/// `registry.terraform.io/shardform/citus`.
#[derive(Clone, Debug)]
pub struct ProviderBinary {
    pub type_name: String,
    pub executable: PathBuf,
}

/// The three providers of this crate, as built by Cargo for this test run.
/// `CARGO_BIN_EXE_*` is resolved at compile time, which is why it lives in
/// this one function and not in code the harness self-tests need.
pub fn provider_binaries() -> Vec<ProviderBinary> {
    [
        ("citus", env!("CARGO_BIN_EXE_terraform-provider-citus")),
        ("pgpool", env!("CARGO_BIN_EXE_terraform-provider-pgpool")),
        (
            "longhorn",
            env!("CARGO_BIN_EXE_terraform-provider-longhorn"),
        ),
    ]
    .into_iter()
    .map(|(type_name, executable)| ProviderBinary {
        type_name: type_name.to_owned(),
        executable: PathBuf::from(executable),
    })
    .collect()
}

/// A `terraform { required_providers { ... } }` block for the given types,
/// pinned to the version the mirror serves.
pub fn required_providers_hcl(type_names: &[&str]) -> String {
    let entries: String = type_names
        .iter()
        .map(|name| {
            format!(
                "    {name} = {{\n      source  = \"{PROVIDER_NAMESPACE}/{name}\"\n      version = \"{PROVIDER_VERSION}\"\n    }}\n"
            )
        })
        .collect();
    format!("terraform {{\n  required_providers {{\n{entries}  }}\n}}\n")
}

/// Links each provider into the unpacked mirror layout
/// `MIRROR/HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION`.
pub fn install_mirror(mirror: &Path, providers: &[ProviderBinary]) -> io::Result<()> {
    // Exists even when empty: the CLI config names it.
    fs::create_dir_all(mirror)?;
    for provider in providers {
        let name = &provider.type_name;
        let package_dir = mirror
            .join(PROVIDER_HOST)
            .join(PROVIDER_NAMESPACE)
            .join(name)
            .join(PROVIDER_VERSION)
            .join(terraform_platform());
        fs::create_dir_all(&package_dir)?;
        let link = package_dir.join(format!("terraform-provider-{name}_v{PROVIDER_VERSION}"));
        // A hard link (a copy across file systems), not a symlink: a cargo
        // build running meanwhile replaces the executable, and Terraform would
        // then refuse the changed package against its lock file.
        if fs::hard_link(&provider.executable, &link).is_err() {
            fs::copy(&provider.executable, &link)?;
        }
    }
    Ok(())
}

/// A CLI config that takes our namespace from the mirror only, and every
/// other provider from its registry as usual.
pub fn cli_config(mirror: &Path) -> String {
    let pattern = format!("{PROVIDER_HOST}/{PROVIDER_NAMESPACE}/*");
    format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = {path}\n    include = [\"{pattern}\"]\n  }}\n  direct {{\n    exclude = [\"{pattern}\"]\n  }}\n}}\n",
        path = hcl_string(&mirror.to_string_lossy()),
    )
}

/// Terraform's `OS_ARCH` for this machine.
fn terraform_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// A quoted HCL string literal. JSON escaping is valid HCL; only template
/// sequences need doubling.
fn hcl_string(text: &str) -> String {
    serde_json::to_string(text)
        .expect("a string serializes")
        .replace("${", "$${")
        .replace("%{", "%%{")
}
