//! Reusable attribute validators. The framework calls them only with known,
//! non-null values, so unknown inputs (a value coming from another resource
//! in the same apply) are planned instead of rejected.

use super::diag::{AttrPath, Diagnostics};
use crate::cty::Value;

pub trait Validator: Send + Sync {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics);
}

/// An integer in an inclusive range (ports, shard counts, ...).
pub struct IntBetween {
    pub min: i64,
    pub max: i64,
}

pub fn int_between(min: i64, max: i64) -> IntBetween {
    IntBetween { min, max }
}

impl Validator for IntBetween {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        match value.as_i64() {
            Some(n) if (self.min..=self.max).contains(&n) => {}
            _ => diags.error_at(
                path.clone(),
                "Value out of range",
                format!(
                    "{path} must be a whole number between {} and {}, got {}.",
                    self.min,
                    self.max,
                    display(value)
                ),
            ),
        }
    }
}

/// A TCP port.
pub fn port() -> IntBetween {
    int_between(1, 65535)
}

/// A string that is not empty and not only whitespace.
pub struct NotBlank;

pub fn not_blank() -> NotBlank {
    NotBlank
}

impl Validator for NotBlank {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            diags.error_at(
                path.clone(),
                "Empty value",
                format!("{path} must not be empty."),
            );
        }
    }
}

/// One of a fixed set of strings.
pub struct OneOf {
    pub allowed: &'static [&'static str],
}

pub fn one_of(allowed: &'static [&'static str]) -> OneOf {
    OneOf { allowed }
}

impl Validator for OneOf {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if let Some(s) = value.as_str() {
            if !self.allowed.contains(&s) {
                diags.error_at(
                    path.clone(),
                    "Invalid value",
                    format!(
                        "{path} must be one of {}, got {s:?}.",
                        quoted_list(self.allowed)
                    ),
                );
            }
        }
    }
}

/// A string whose every character satisfies a predicate, with a length limit;
/// used for names that end up in identifiers, file names or URLs.
pub struct NameLike {
    pub max_len: usize,
    pub allowed: fn(char) -> bool,
    pub explain: &'static str,
}

impl Validator for NameLike {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        if s.is_empty() || s.chars().count() > self.max_len || !s.chars().all(self.allowed) {
            diags.error_at(
                path.clone(),
                "Invalid name",
                format!(
                    "{path} must be 1 to {} characters of {}, got {s:?}.",
                    self.max_len, self.explain
                ),
            );
        }
    }
}

/// A host name (RFC 1123 labels), an IPv4 or IPv6 address, and, when
/// `socket_dir` is set, an absolute Unix-socket directory as libpq takes.
pub struct HostName {
    pub socket_dir: bool,
}

/// A host name or address other machines use (Citus registers it).
pub fn host_name() -> HostName {
    HostName { socket_dir: false }
}

/// A host name, an address or a Unix-socket directory, as libpq's `host`.
pub fn connect_host() -> HostName {
    HostName { socket_dir: true }
}

pub fn is_host_name(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // All digits and dots is a malformed IPv4 address, not a name.
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn is_socket_dir(text: &str) -> bool {
    text.starts_with('/')
        && text.len() <= 107
        && !text.chars().any(|c| c.is_control() || c == ',' || c.is_whitespace())
}

impl Validator for HostName {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(s) = value.as_str() else { return };
        if is_host_name(s) || (self.socket_dir && is_socket_dir(s)) {
            return;
        }
        let socket = if self.socket_dir {
            ", or the absolute directory of a Unix socket"
        } else {
            ""
        };
        diags.error_at(
            path.clone(),
            "Invalid host",
            format!(
                "{path} must be a host name (letters, digits, `-` and `.`, such as \"db-1.internal\"), an IPv4 address (\"10.0.0.5\") or an IPv6 address (\"fd00::5\"){socket}; got {s:?}."
            ),
        );
    }
}

/// A Go-style duration as Terraform users write timeouts: "30s", "10m", "1h30m".
pub struct Duration;

pub fn duration() -> Duration {
    Duration
}

impl Validator for Duration {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if let Some(s) = value.as_str() {
            if parse_duration(s).is_none() {
                diags.error_at(
                    path.clone(),
                    "Invalid duration",
                    format!("{path} must be a duration such as \"30s\", \"10m\" or \"1h30m\", at most {}h (a year), got {s:?}.", MAX_DURATION.as_secs() / 3600),
                );
            }
        }
    }
}

/// Parses "1h30m", "90s", "2m30s", "500ms".
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    // Bounded: a longer wait is a mistake, and durations near the limits of
    // `Duration` or `Instant` made the provider panic.
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&total) {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// The longest duration accepted: a year.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn display(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_too_large_for_duration_are_rejected_not_a_panic() {
        assert_eq!(super::parse_duration("99999999999999999999h"), None);
        // Representable as a Duration, but Instant::now() + it overflows.
        assert_eq!(super::parse_duration("3000000000000000h"), None);
        assert_eq!(super::parse_duration("8785h"), None);
        assert_eq!(super::parse_duration("8784h"), Some(super::MAX_DURATION));
        assert_eq!(super::parse_duration("1h30m"), Some(std::time::Duration::from_secs(5400)));
    }

    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            parse_duration("1h30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("45s"),
            Some(std::time::Duration::from_secs(45))
        );
        assert_eq!(
            parse_duration("250ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn host_names_and_addresses() {
        for ok in ["localhost", "db-1.internal", "10.0.0.5", "::1", "fd00::5", "citus-worker-0.citus.svc.cluster.local.", "w_1"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in ["", "x'); select 1; --", "a b", "-a", "a-.b", "a..b", "999.1.1.1", "10.0.0", "h:5432", "[::1]", "host/x", &"a".repeat(64)] {
            assert!(!is_host_name(bad), "{bad}");
        }
        let mut diags = Diagnostics::new();
        connect_host().validate(&Value::string("/var/run/postgresql"), &AttrPath::root("host"), &mut diags);
        host_name().validate(&Value::string("/var/run/postgresql"), &AttrPath::root("host"), &mut diags);
        assert_eq!(diags.iter().count(), 1);
    }

    #[test]
    fn port_out_of_range_names_the_path() {
        let mut diags = Diagnostics::new();
        let path = AttrPath::root("coordinator").attr("port");
        port().validate(&Value::int(70000), &path, &mut diags);
        let d = diags.iter().next().expect("a diagnostic");
        assert_eq!(d.path.as_ref(), Some(&path));
        assert!(d
            .detail
            .contains("coordinator.port must be a whole number between 1 and 65535, got 70000"));
    }
}
