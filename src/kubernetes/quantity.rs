//! Kubernetes quantities for sizes, as users write them (`"20Gi"`,
//! `"512Mi"`, `"1.5T"`) and as the API server returns them.

use crate::cty::Value;
use crate::framework::validators::Validator;
use crate::framework::{AttrPath, Diagnostics};

pub(crate) const SUFFIXES: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// Parses a Kubernetes-style quantity that carries a unit; bare numbers are
/// refused so "20" never silently means 20 bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("{text:?} has no unit: write it with one, such as \"20Gi\" or \"512Mi\" (binary Ki/Mi/Gi/Ti/Pi/Ei or decimal k/M/G/T/P/E)")
        })?;
    let (number, unit) = text.split_at(split);
    let multiplier = SUFFIXES
        .iter()
        .find(|(suffix, _)| *suffix == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            format!("{text:?} has an unknown unit {unit:?}: use Ki, Mi, Gi, Ti, Pi, Ei (binary) or k, M, G, T, P, E (decimal)")
        })?;
    if number.is_empty()
        || number.matches('.').count() > 1
        || number.starts_with('.')
        || number.ends_with('.')
    {
        return Err(format!(
            "{text:?} is not a number followed by a unit, such as \"20Gi\""
        ));
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = whole
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let mut bytes = whole * multiplier as u128;
    if !fraction.is_empty() {
        let digits: u128 = fraction
            .parse()
            .map_err(|_| format!("{text:?} is not a valid number"))?;
        let scale = 10u128
            .checked_pow(fraction.len() as u32)
            .ok_or_else(|| format!("{text:?} has too many decimals"))?;
        let part = digits * multiplier as u128;
        if part % scale != 0 {
            return Err(format!("{text:?} is not a whole number of bytes"));
        }
        bytes += part / scale;
    }
    u64::try_from(bytes)
        .ok()
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A quantity as the API server returns it: units optional (plain bytes too).
pub fn parse_api(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    parse(text).ok()
}

/// Bytes in the largest binary unit that holds them exactly (`"30Gi"`).
pub fn format(bytes: u64) -> String {
    for (suffix, multiplier) in SUFFIXES[..6].iter().rev() {
        if bytes >= *multiplier && bytes % multiplier == 0 {
            return format!("{}{suffix}", bytes / multiplier);
        }
    }
    format!("{}Ki", bytes.div_ceil(1024))
}

/// A size with a unit, greater than zero (a volume claim's request).
pub struct PositiveSize;

impl Validator for PositiveSize {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(text) = value.as_str() else { return };
        match parse(text) {
            Err(e) => diags.error_at(path.clone(), "Invalid size", format!("{path}: {e}.")),
            Ok(0) => diags.error_at(path.clone(), "Invalid size", format!("{path} must be greater than zero, got {text:?}.")),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse("20Gi"), Ok(20 << 30));
        assert_eq!(parse("512Mi"), Ok(512 << 20));
        assert_eq!(parse("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse("10G"), Ok(10_000_000_000));
        assert_eq!(parse("100k"), Ok(100_000));
        assert_eq!(parse_api("1073741824"), Some(1 << 30));
        assert_eq!(format(30 << 30), "30Gi");
    }

    #[test]
    fn a_size_needs_a_unit() {
        assert!(parse("20").unwrap_err().contains("no unit"));
        assert!(parse("20GB").unwrap_err().contains("unknown unit"));
        assert!(parse("-1Gi").is_err());
        assert!(parse("Gi").is_err());
        assert!(parse("1.2.3Gi").is_err());
        assert!(parse("0.3Ki").unwrap_err().contains("whole number"));
    }

    #[test]
    fn a_positive_size_is_more_than_zero() {
        let path = AttrPath::root("kubernetes").attr("storage_size");
        let mut diags = Diagnostics::new();
        for bad in ["0Gi", "-1Gi", "10"] {
            PositiveSize.validate(&Value::string(bad), &path, &mut diags);
        }
        assert_eq!(diags.iter().count(), 3);
        assert!(diags.iter().all(|d| d.path.as_ref() == Some(&path)));
        let mut ok = Diagnostics::new();
        PositiveSize.validate(&Value::string("10Gi"), &path, &mut ok);
        assert!(!ok.has_errors());
    }
}
