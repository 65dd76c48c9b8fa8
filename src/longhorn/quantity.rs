//! Volume sizes as Longhorn stores them (bytes, rounded up to a multiple of
//! 2 MiB); parsing and formatting are Kubernetes quantities
//! ([`crate::kubernetes::quantity`], re-exported here).

use crate::cty::Value;
use crate::framework::validators::Validator;
use crate::framework::{AttrPath, Diagnostics};
pub use crate::kubernetes::quantity::{format, parse, parse_api};

const MIB: u64 = 1024 * 1024;
/// Longhorn rounds every size up to a multiple of this.
pub const ROUNDING: u64 = 2 * MIB;
/// The smallest volume Longhorn's webhook accepts.
pub const MINIMUM: u64 = 10 * MIB;

/// The size Longhorn keeps for a requested one.
pub fn rounded(bytes: u64) -> u64 {
    bytes.div_ceil(ROUNDING) * ROUNDING
}

/// Validates `size`: a unit, at least 10 MiB after rounding.
pub struct SizeValidator;

impl Validator for SizeValidator {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(text) = value.as_str() else { return };
        match parse(text) {
            Err(e) => diags.error_at(path.clone(), "Invalid size", format!("{path}: {e}.")),
            Ok(bytes) if bytes < MINIMUM => diags.error_at(
                path.clone(),
                "Volume too small",
                format!(
                    "{path} is {text:?}, but Longhorn volumes are at least 10Mi (10485760 bytes)."
                ),
            ),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_follows_longhorn() {
        assert_eq!(rounded(20 << 30), 20 << 30);
        assert_eq!(rounded(15 * MIB), 16 * MIB);
        assert_eq!(rounded(10_000_000_000), 10_001_317_888);
        assert_eq!(format(30 << 30), "30Gi");
        assert_eq!(format(16 * MIB), "16Mi");
        assert_eq!(format(10_001_317_888), "9538Mi");
    }

    #[test]
    fn small_sizes_are_refused_with_the_path() {
        let mut diags = Diagnostics::new();
        SizeValidator.validate(&Value::string("8Mi"), &AttrPath::root("size"), &mut diags);
        let d = diags.iter().next().expect("a diagnostic");
        assert_eq!(d.path, Some(AttrPath::root("size")));
        assert!(d.detail.contains("at least 10Mi"));
        let mut ok = Diagnostics::new();
        SizeValidator.validate(&Value::string("10Mi"), &AttrPath::root("size"), &mut ok);
        assert!(!ok.has_errors(), "{ok:?}");
    }
}
