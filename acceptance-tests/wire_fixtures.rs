//! Codec fixtures: the bytes real Terraform sent to the citus provider, one
//! directory per Terraform version (`fixtures/terraform-1.0.3`,
//! `fixtures/terraform-1.11.4`).
//!
//! `capture_terraform_fixtures` (ignored by default, needs Citus) records them
//! through `SHARDFORM_CAPTURE_DIR` with whichever Terraform the harness runs
//! (`TF_ACC_TERRAFORM_PATH`); `terraform_fixtures_decode_and_reencode` checks
//! our codec against every one of them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shardform::cty::{self, Type, Value};
use shardform::framework::Provider;

use crate::harness::{require_citus, required_providers_hcl, terraform_version_label, CitusCluster, Workdir};

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("acceptance-tests/fixtures")
}

/// Every `terraform-<version>` directory of captured fixtures.
fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures_root())
        .expect("fixtures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("terraform-")))
        .collect();
    dirs.sort();
    dirs
}

/// The file beside the fixtures that holds the types they were captured
/// under, so the fixtures keep testing the codec when the schema moves on.
const TYPES_FILE: &str = "types.json";

fn recorded_type(dir: &Path, type_name: &str) -> Type {
    let text = fs::read_to_string(dir.join(TYPES_FILE)).expect("fixture types file");
    let types: serde_json::Value = serde_json::from_str(&text).expect("fixture types are JSON");
    Type::from_json(&types[type_name])
        .unwrap_or_else(|e| panic!("fixture type of {type_name}: {e}"))
}

fn current_type(type_name: &str) -> Type {
    let provider = shardform::citus::provider();
    if type_name == "provider" {
        return provider.schema().value_type();
    }
    provider
        .resources()
        .into_iter()
        .find(|r| r.type_name() == type_name)
        .unwrap_or_else(|| panic!("no resource type {type_name}"))
        .schema()
        .value_type()
}

/// `<rpc>.<field>.<type>.<index>.<ext>` -> (rpc, field, type, ext)
fn parse_name(path: &Path) -> (String, String, String, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts.len(), 5, "unexpected fixture name {name}");
    (
        parts[0].into(),
        parts[1].into(),
        parts[2].into(),
        parts[4].into(),
    )
}

fn contains_unknown(v: &Value) -> bool {
    !v.is_wholly_known()
}

/// Whether msgpack `bytes` hold an extension of type 12: an unknown with
/// refinements (Terraform 1.3+), which we decode as unknown and, like every
/// unknown, re-encode without refinements.
fn has_refined_unknown(bytes: &[u8]) -> bool {
    // fixext 1/2/4/8/16 (d4-d8) and ext 8/16/32 (c7-c9) followed by type 12.
    bytes.windows(2).any(|w| matches!(w[0], 0xd4..=0xd8) && w[1] == 12)
        || bytes.windows(3).any(|w| w[0] == 0xc7 && w[2] == 12)
}

#[test]
fn terraform_fixtures_decode_and_reencode() {
    let versions: Vec<String> = fixture_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        versions.iter().any(|v| v == "terraform-1.0.3") && versions.iter().any(|v| v.starts_with("terraform-1.11")),
        "fixtures of Terraform 1.0.3 and 1.11 expected, found {versions:?}"
    );
    for dir in fixture_dirs() {
        check_fixtures(&dir);
    }
}

fn check_fixtures(dir: &Path) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("fixtures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(TYPES_FILE))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected captured fixtures, found {}",
        files.len()
    );
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut unknown_in_config = false;
    let mut unknown_in_planned = false;
    let mut nil_prior_on_create = false;
    let mut refined = 0;
    for path in &files {
        let (rpc, field, type_name, ext) = parse_name(path);
        let bytes = fs::read(path).unwrap();
        let ty = recorded_type(dir, &type_name);
        let value = if ext == "json" {
            cty::decode_json(&bytes, &ty).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        } else {
            let value = cty::decode_msgpack(&bytes, &ty)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let again = cty::encode_msgpack(&value, &ty).unwrap();
            if has_refined_unknown(&bytes) {
                // Refinements are dropped; the rest must survive a round trip.
                refined += 1;
                assert!(contains_unknown(&value), "{}", path.display());
                assert_eq!(cty::decode_msgpack(&again, &ty).unwrap(), value, "{}", path.display());
            } else {
                // Our encoder writes what Terraform wrote, byte for byte.
                assert_eq!(again, bytes, "{}: re-encoding differs from Terraform's bytes", path.display());
            }
            value
        };
        *seen.entry((rpc.clone(), field.clone())).or_default() += 1;
        if rpc == "PlanResourceChange"
            && field == "config"
            && value.attr("coordinator").attr("host").is_unknown()
        {
            unknown_in_config = true;
        }
        if rpc == "ApplyResourceChange" && field == "planned_state" && contains_unknown(&value) {
            unknown_in_planned = true;
        }
        if rpc == "PlanResourceChange" && field == "prior_state" && value.is_null() {
            assert_eq!(bytes, vec![0xc0], "a null object is msgpack nil");
            nil_prior_on_create = true;
        }
    }
    for wanted in [
        ("PrepareProviderConfig", "config"),
        ("Configure", "config"),
        ("ValidateResourceTypeConfig", "config"),
        ("PlanResourceChange", "proposed_new_state"),
        ("ApplyResourceChange", "planned_state"),
        ("ReadResource", "current_state"),
        ("UpgradeResourceState", "raw_state"),
    ] {
        assert!(
            seen.contains_key(&(wanted.0.to_string(), wanted.1.to_string())),
            "no fixture for {wanted:?}"
        );
    }
    assert!(
        unknown_in_config,
        "no fixture carries an unknown value in a config"
    );
    assert!(
        unknown_in_planned,
        "no fixture carries unknown computed values in a planned state"
    );
    assert!(nil_prior_on_create, "no fixture carries a null prior state");
    // Terraform 1.3+ refines unknowns; the capture config makes one (see `c`).
    let refines = !dir.ends_with("terraform-1.0.3");
    assert!(!refines || refined > 0, "{}: no fixture with a refined unknown", dir.display());
    eprintln!(
        "wire fixtures {}: {} files decoded, {refined} with refined unknowns",
        dir.display(),
        files.len()
    );
}

/// Re-records the fixtures: `cargo test --test acceptance capture_terraform_fixtures -- --ignored`.
#[test]
#[ignore = "re-records the committed fixtures; run by hand"]
fn capture_terraform_fixtures() {
    if !require_citus("capture_terraform_fixtures") {
        return;
    }
    let cluster = CitusCluster::start(1);
    let (coord, worker) = (&cluster.coordinator, &cluster.workers[0]);
    let raw = std::env::temp_dir().join(format!("shardform-capture-{}", std::process::id()));
    let _ = fs::remove_dir_all(&raw);
    std::env::set_var(shardform::plugin::capture::CAPTURE_DIR_ENV, &raw);

    let tf = Workdir::new("capture_fixtures");
    let a = format!(
        "resource \"citus_cluster\" \"a\" {{\n  coordinator {{\n    host = \"127.0.0.1\"\n    port = {c}\n  }}\n  \
         worker \"w1\" {{\n    host = \"127.0.0.1\"\n    port = {w}\n    connect_port = {w}\n  }}\n  \
         rebalance {{\n    shard_transfer_mode = \"block_writes\"\n  }}\n  timeouts {{\n    create = \"20m\"\n  }}\n}}\n",
        c = coord.port(),
        w = worker.port()
    );
    let b = "resource \"citus_cluster\" \"b\" {\n  coordinator {\n    host = citus_cluster.a.citus_version\n  }\n}\n";
    // Terraform 1.3+ refines this unknown (not null, known prefix): msgpack extension 12.
    let c = "resource \"citus_cluster\" \"c\" {\n  coordinator {\n    host = \"node-${citus_cluster.a.citus_version}\"\n  }\n}\n";
    let provider = format!(
        "provider \"citus\" {{\n  host = \"127.0.0.1\"\n  port = {}\n  password = \"not-a-real-password\"\n  connect_timeout = 5\n}}\n",
        coord.port()
    );
    let head = required_providers_hcl(&["citus"]);
    tf.write_config(&format!("{head}{provider}{a}{b}{c}"));
    tf.init();
    let plan = tf.run(&["plan", "-input=false", "-no-color"]);
    assert!(plan.success(), "{plan}");
    tf.write_config(&format!("{head}{provider}{a}"));
    tf.apply_and_assert_idempotent();
    std::env::remove_var(shardform::plugin::capture::CAPTURE_DIR_ENV);

    // Keep one file per distinct content, named by what it is.
    let out = fixtures_root().join(format!("terraform-{}", terraform_version_label()));
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    let types = serde_json::json!({
        "provider": current_type("provider").to_json(),
        "citus_cluster": current_type("citus_cluster").to_json(),
    });
    fs::write(
        out.join(TYPES_FILE),
        serde_json::to_string_pretty(&types).unwrap(),
    )
    .unwrap();
    let mut captured: Vec<PathBuf> = fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    captured.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).unwrap());
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    let mut counters: BTreeMap<String, usize> = BTreeMap::new();
    for path in captured {
        let bytes = fs::read(&path).unwrap();
        // <pid>-<n>-<rpc>-<field>-<type>.<ext>
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let parts: Vec<&str> = stem.splitn(5, '-').collect();
        let key = format!("{}.{}.{}", parts[2], parts[3], parts[4]);
        if contents.iter().any(|(k, b)| *k == key && *b == bytes) {
            continue;
        }
        contents.push((key.clone(), bytes.clone()));
        let index = counters.entry(key.clone()).or_default();
        fs::write(out.join(format!("{key}.{index:02}.{ext}")), bytes).unwrap();
        *index += 1;
    }
    let _ = fs::remove_dir_all(&raw);
}
