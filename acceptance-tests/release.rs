//! The release as users receive it: `.ci/release` packages and signs the
//! three providers, `sha256sum -c` and `gpg --verify` accept what it made, and
//! real Terraform installs them from a provider registry on loopback HTTPS
//! (`acceptance-tests/registry/serve.py`, Terraform's registry protocol),
//! recording the zips' `zh:` hashes in the lock file and refusing a tampered zip.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::tempdir::TempDir;
use crate::harness::{terraform_version, Workdir};

const VERSION: &str = "0.1.0";
const PROVIDERS: [&str; 3] = ["citus", "pgpool", "longhorn"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion; its output, or a panic naming it.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A throwaway RSA signing key in its own keyring; its secret key, armored.
fn signing_key(gnupg_home: &Path) -> String {
    run(Command::new("gpg")
        .env("GNUPGHOME", gnupg_home)
        .args(["--batch", "--passphrase", "", "--quick-gen-key", "shardform release test <release@example.invalid>", "rsa2048", "sign", "1d"]));
    run(Command::new("gpg").env("GNUPGHOME", gnupg_home).args(["--batch", "--armor", "--export-secret-keys"]))
}

/// A test CA and a certificate for `localhost` it signed, made with openssl.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [ca, cert, key, ext] = ["ca.pem", "server.pem", "server.key", "server.ext"].map(|f| dir.join(f));
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=shardform release test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-out", "server.pem", "-extfile", "server.ext"]);
    (ca, cert, key)
}

/// The registry process; stopped (stdin closed, then killed) when dropped.
struct Registry {
    child: Child,
    url: String,
}

impl Registry {
    fn start(artifacts: &Path, cert: &Path, key: &Path) -> Registry {
        let mut child = Command::new("python3")
            .arg(repo_root().join("acceptance-tests/registry/serve.py"))
            .arg("--dir")
            .arg(artifacts)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the registry");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("REGISTRY READY ").unwrap_or_else(|| panic!("registry said {line:?}")).to_string();
        Registry { child, url }
    }

    /// `localhost:PORT`, the host part of the providers' source addresses.
    fn host(&self) -> &str {
        self.url.trim_start_matches("https://")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

fn registry_config(host: &str) -> String {
    let mut hcl = String::from("terraform {\n  required_providers {\n");
    for name in PROVIDERS {
        hcl.push_str(&format!("    {name} = {{\n      source  = \"{host}/shardform/{name}\"\n      version = \"{VERSION}\"\n    }}\n"));
    }
    hcl.push_str("  }\n}\n");
    hcl
}

#[test]
fn release_artifacts_verify_and_install_from_a_registry() {
    let scratch = TempDir::new(&std::env::temp_dir(), "shardform-release").unwrap();
    let [gnupg, artifacts, tls] = ["gnupg", "artifacts", "tls"].map(|d| scratch.path().join(d));
    for dir in [&gnupg, &tls] {
        fs::create_dir_all(dir).unwrap();
        // gpg wants its home private.
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let secret_key = signing_key(&gnupg);

    // The release script, packaging the executables this test run built.
    let built = Path::new(env!("CARGO_BIN_EXE_terraform-provider-citus")).parent().unwrap();
    let released = run(Command::new("bash")
        .arg(repo_root().join(".ci/release"))
        .arg("--prebuilt")
        .arg(built)
        .arg("--out")
        .arg(&artifacts)
        .env("SHARDFORM_GPG_PRIVATE_KEY", &secret_key)
        .env_remove("GNUPGHOME"));
    eprintln!("release: {released}");
    assert!(!released.contains("PRIVATE KEY"), "the key reached the output");

    // Checksums and signatures, as a user (or the registry) checks them.
    let keyring = scratch.path().join("verify.kbx");
    run(Command::new("gpg").args(["--batch", "--no-default-keyring", "--keyring"]).arg(&keyring)
        .arg("--import").arg(artifacts.join("signing-key.asc")));
    for name in PROVIDERS {
        let sums = format!("terraform-provider-{name}_{VERSION}_SHA256SUMS");
        let listed = fs::read_to_string(artifacts.join(&sums)).unwrap();
        assert!(listed.contains(&format!("terraform-provider-{name}_{VERSION}_linux_amd64.zip")), "{listed}");
        assert!(listed.contains(&format!("terraform-provider-{name}_{VERSION}_manifest.json")), "{listed}");
        let checked = run(Command::new("sha256sum").arg("-c").arg(&sums).current_dir(&artifacts));
        eprintln!("release: sha256sum -c {sums}:\n{}", checked.trim_end());
        let verified = run(Command::new("gpg").args(["--batch", "--no-default-keyring", "--keyring"]).arg(&keyring)
            .arg("--verify").arg(artifacts.join(format!("{sums}.sig"))).arg(artifacts.join(&sums)));
        assert!(verified.contains("Good signature"), "{verified}");
        let manifest: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(artifacts.join(format!("terraform-provider-{name}_{VERSION}_manifest.json"))).unwrap()).unwrap();
        assert_eq!(manifest["metadata"]["protocol_versions"], serde_json::json!(["5.0"]));
        let zip = artifacts.join(format!("terraform-provider-{name}_{VERSION}_linux_amd64.zip"));
        let listing = run(Command::new("python3").args(["-m", "zipfile", "-l"]).arg(&zip));
        assert!(listing.contains(&format!("terraform-provider-{name}_v{VERSION}")), "{listing}");
        let tree = artifacts.join(format!("trees/terraform-provider-{name}"));
        for part in ["docs/index.md", "examples/provider/provider.tf", "README.md", "terraform-registry-manifest.json"] {
            assert!(tree.join(part).exists(), "the {name} tree lacks {part}");
        }
    }

    // Real Terraform installs all three from the registry.
    let (ca, cert, key) = certificates(&tls);
    let registry = Registry::start(&artifacts, &cert, &key);
    let tf = Workdir::with_providers("release_registry", Vec::new());
    tf.set_env("SSL_CERT_FILE", ca.to_str().unwrap());
    tf.write_config(&registry_config(registry.host()));
    let init = tf.init();
    eprintln!("release: terraform {:?} init from {}:\n{}", terraform_version(), registry.url, init.stdout.trim_end());
    let lock = fs::read_to_string(tf.path().join(".terraform.lock.hcl")).unwrap();
    for name in PROVIDERS {
        let zip = artifacts.join(format!("terraform-provider-{name}_{VERSION}_linux_amd64.zip"));
        let hash = format!("\"zh:{}\"", sha256_hex(&zip));
        let block_start = lock.find(&format!("provider \"{}/shardform/{name}\"", registry.host())).expect("a lock entry per provider");
        let block = &lock[block_start..];
        let block = &block[..block.find("\n}").unwrap()];
        assert!(block.contains(&hash), "the lock file lacks {hash} for {name}:\n{lock}");
    }
    // The installed executables are the providers.
    let schema = tf.run(&["providers", "schema", "-json"]);
    assert!(schema.success() && schema.stdout.contains("citus_cluster") && schema.stdout.contains("pgpool_ha"), "{schema}");

    // A zip changed after signing is refused.
    let zip = artifacts.join(format!("terraform-provider-citus_{VERSION}_linux_amd64.zip"));
    let mut bytes = fs::read(&zip).unwrap();
    bytes.extend_from_slice(b"tampered");
    fs::write(&zip, bytes).unwrap();
    let fresh = Workdir::with_providers("release_tampered", Vec::new());
    fresh.set_env("SSL_CERT_FILE", ca.to_str().unwrap());
    fresh.write_config(&registry_config(registry.host()));
    let refused = fresh.run(&["init"]);
    assert!(!refused.success(), "a tampered zip was installed:\n{refused}");
    assert!(refused.stderr.to_lowercase().contains("checksum"), "{refused}");
    eprintln!("release: tampered zip refused: {}", refused.stderr.lines().find(|l| l.to_lowercase().contains("checksum")).unwrap_or(""));
}
