//! The API server's rules for names, labels and image references, as
//! plan-time validators: a value the server would refuse (422 Invalid at
//! apply, after other objects were already made) is refused at plan, at its
//! attribute path, with the rule spelled out.

use crate::cty::Value;
use crate::framework::validators::Validator;
use crate::framework::{AttrPath, Diagnostics};

fn is_label_part(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && s.chars().all(allowed)
}

/// A DNS-1123 label (namespaces, most object names): at most 63 lower case
/// letters, digits and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_part(s, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS-1035 label (Service names): a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A DNS-1123 subdomain (StorageClass, PVC and ConfigMap names): at most 253
/// characters, DNS-1123 labels joined by `.`.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| is_label_part(l, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
}

fn is_label_name(s: &str) -> bool {
    s.len() <= 63 && is_label_part(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `key` is not a label key (`[prefix/]name`), or `None` when it is one.
pub fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Some(format!(
                "the prefix {prefix:?} must be a DNS subdomain (lower case letters, digits, `-` and `.`, at most 253), as in \"kubernetes.io/hostname\""
            ));
        }
    }
    if !is_label_name(name) {
        return Some(format!(
            "the name {name:?} must be 1 to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

/// Why `text` is not an image reference `[registry[:port]/]path[:tag][@sha256:HEX]`,
/// or `None` when it is one (the grammar of the distribution project's
/// `reference` package, which the kubelet and container runtimes use).
pub fn image_reference_error(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".into());
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("it contains {c:?}"));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:");
        if !hex.is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))) {
            return Some(format!("the digest {digest:?} must be `sha256:` and 64 lower case hex digits"));
        }
    }
    // A tag follows the last `:` after the last `/` (a registry's port comes before a `/`).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Some(format!("the tag {tag:?} must be 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"));
        }
    }
    if name.len() > 255 {
        return Some("the repository name is longer than 255 characters".into());
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first component is a registry when it looks like a host (a `.`,
    // a port, or `localhost`) and more components follow.
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let (host, port) = match first.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (first, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|l| is_label_part(l, |c| c.is_ascii_alphanumeric() || c == '-'));
            if !host_ok || port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
                return Some(format!("the registry {first:?} must be a host name with an optional port, as in \"registry.example.com:5000\""));
            }
            components.remove(0);
        }
    }
    for component in components {
        if !is_path_component(component) {
            return Some(format!(
                "the path component {component:?} must be lower case letters and digits, separated by `.`, `_`, `__` or dashes"
            ));
        }
    }
    None
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut need_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[sep_start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
        need_alnum = true;
    }
    !need_alnum
}

/// Which Kubernetes name rule a string attribute follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1123 subdomain (StorageClass and PVC names).
    Subdomain,
}

/// Validates a string attribute (or each element of a list of strings)
/// against a [`NameRule`]; `what` names the thing for the message.
pub struct KubeName {
    pub rule: NameRule,
    pub what: &'static str,
}

pub fn dns_label(what: &'static str) -> KubeName {
    KubeName { rule: NameRule::Label, what }
}

pub fn dns_subdomain(what: &'static str) -> KubeName {
    KubeName { rule: NameRule::Subdomain, what }
}

impl KubeName {
    fn check(&self, s: &str, path: &AttrPath, diags: &mut Diagnostics) {
        let (ok, rule) = match self.rule {
            NameRule::Label => (
                is_dns_label(s),
                "a DNS-1123 label: 1 to 63 lower case letters, digits and `-`, starting and ending with a letter or digit",
            ),
            NameRule::Subdomain => (
                is_dns_subdomain(s),
                "a DNS-1123 subdomain: at most 253 lower case letters, digits, `-` and `.`, each part starting and ending with a letter or digit",
            ),
        };
        if !ok {
            diags.error_at(
                path.clone(),
                format!("Invalid {}", self.what),
                format!("{path} must be {rule} (as Kubernetes requires of a {}), got {s:?}.", self.what),
            );
        }
    }
}

impl Validator for KubeName {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        match value {
            Value::String(s) => self.check(s, path, diags),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = item.as_str() {
                        self.check(s, &path.index(i), diags);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A container image reference.
pub struct ImageReference;

impl Validator for ImageReference {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        if let Some(why) = image_reference_error(s) {
            diags.error_at(
                path.clone(),
                "Invalid image reference",
                format!(
                    "{path} must be an image reference [registry[:port]/]path[:tag][@sha256:digest], such as \
                     \"registry.example.com/shardform/pgpool-ha:15\"; {s:?} is not one: {why}."
                ),
            );
        }
    }
}

/// A map of node labels (a `nodeSelector`): keys are label keys, values label values.
pub struct LabelMap;

impl Validator for LabelMap {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Value::Map(labels) = value else { return };
        for (key, v) in labels {
            let at = path.key(key);
            if let Some(why) = label_key_error(key) {
                diags.error_at(at.clone(), "Invalid label key", format!("{path} key {key:?} is not a Kubernetes label key: {why}."));
            }
            if let Some(s) = v.as_str() {
                if !is_label_value(s) {
                    diags.error_at(
                        at,
                        "Invalid label value",
                        format!(
                            "{path}[{key:?}] must be a Kubernetes label value: empty, or 1 to 63 letters, digits, `-`, `_` and `.`, \
                             starting and ending with a letter or digit; got {s:?}."
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_subdomains() {
        for ok in ["a", "db", "citus-prod", "0a", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns1035_label("g1") && !is_dns1035_label("1g"));
        for ok in ["longhorn", "fast.ssd", "a-b.c-d", "pvc-0"] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "Longhorn", "a..b", ".a", "a.", "a_b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["disk", "kubernetes.io/hostname", "node.example.com/ssd", "a_b.c-D"] {
            assert_eq!(label_key_error(ok), None, "{ok}");
        }
        assert!(label_key_error("Bad Prefix/x").unwrap().contains("prefix"));
        assert!(label_key_error("example.com/").unwrap().contains("name"));
        assert!(label_key_error("-x").is_some());
        assert!(label_key_error(&"a".repeat(64)).is_some());
        assert!(is_label_value("") && is_label_value("ssd") && is_label_value("A.b_c-1"));
        assert!(!is_label_value("-x") && !is_label_value("a b") && !is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn image_references() {
        let digest = format!("@sha256:{}", "0123456789abcdef".repeat(4));
        for ok in [
            "postgres".to_string(),
            "postgres:15".into(),
            "library/postgres:15.4-bookworm".into(),
            "registry.example.com/shardform/pgpool-ha:15".into(),
            "localhost:5000/pgpool-ha".into(),
            "localhost/pgpool-ha:dev".into(),
            "ghcr.io/a__b/c-d.e:v1.0_x".into(),
            format!("registry.example.com:5000/pgpool-ha:15{digest}"),
            format!("pgpool-ha{digest}"),
        ] {
            assert_eq!(image_reference_error(&ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("pgpool ha", "contains"),
            ("Pgpool-HA", "path component"),
            ("pgpool-ha:", "tag"),
            ("pgpool-ha:-x", "tag"),
            ("pgpool-ha@sha256:abc", "digest"),
            ("pgpool-ha@md5:0123", "digest"),
            ("registry.example.com:port/x", "registry"),
            ("a//b", "path component"),
            ("a/-b", "path component"),
            ("a/b.", "path component"),
        ] {
            let got = image_reference_error(bad);
            assert!(got.as_deref().is_some_and(|g| g.contains(why)), "{bad}: {got:?}");
        }
    }

    #[test]
    fn validators_report_at_their_paths() {
        let mut diags = Diagnostics::new();
        let path = AttrPath::root("kubernetes").attr("namespace");
        dns_label("namespace").validate(&Value::string("Prod_DB"), &path, &mut diags);
        let claims = AttrPath::root("kubernetes").attr("volume_claims");
        dns_subdomain("PersistentVolumeClaim name").validate(
            &Value::List(vec![Value::string("ok"), Value::string("Not OK")]),
            &claims,
            &mut diags,
        );
        let image = AttrPath::root("kubernetes").attr("image");
        ImageReference.validate(&Value::string("not an image"), &image, &mut diags);
        let selector = AttrPath::root("kubernetes").attr("node_selector");
        LabelMap.validate(
            &Value::Map([("bad key!".to_string(), Value::string("-bad"))].into_iter().collect()),
            &selector,
            &mut diags,
        );
        let paths: Vec<String> = diags.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            [
                "kubernetes.namespace",
                "kubernetes.volume_claims[1]",
                "kubernetes.image",
                "kubernetes.node_selector[\"bad key!\"]",
                "kubernetes.node_selector[\"bad key!\"]",
            ]
        );
        assert!(diags.iter().next().unwrap().detail.contains("DNS-1123 label"));
    }
}
