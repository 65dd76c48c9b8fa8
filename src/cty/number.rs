//! cty numbers.
//!
//! Terraform numbers are arbitrary-precision. On the wire they arrive as a
//! msgpack int (any width), a float, or a decimal string when neither is exact.
//! [`Number`] keeps every one of them without loss, in a normalised form so
//! that the same number always has the same representation (and so `==` is
//! numeric equality: `5`, `5.0` and `"5"` are all equal).

use std::fmt;

/// An exact cty number.
#[derive(Clone, PartialEq)]
pub struct Number(Repr);

/// Normalised representation; each number has exactly one form:
/// - `Int`: every integer in i64 range;
/// - `UInt`: integers above `i64::MAX` that fit u64;
/// - `Float`: non-integers and out-of-range integers that are exactly an
///   f64, and the infinities;
/// - `Decimal`: everything else (finite, not exactly representable above).
#[derive(Clone, PartialEq)]
enum Repr {
    Int(i64),
    UInt(u64),
    Float(f64),
    Decimal(Decimal),
}

/// `digits × 10^exponent`, with `digits` free of leading and trailing zeros.
/// An empty `digits` means zero.
#[derive(Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// Beyond this many zeros, `Display` switches to exponent notation rather
/// than spell out a huge or tiny number digit by digit.
const MAX_PLAIN_ZEROS: i64 = 1000;

impl Number {
    /// Parses a JSON number or a decimal string as Terraform accepts it
    /// (`-12`, `0.5`, `1e400`, `+3`, `.5`, and `Inf`/`-Inf`).
    pub fn parse(s: &str) -> Option<Number> {
        let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
        if unsigned.eq_ignore_ascii_case("inf") {
            let inf = if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Some(Number(Repr::Float(inf)));
        }
        Decimal::parse(s).map(Number::from_decimal)
    }

    /// The value as i64, only when it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        // Normalisation puts every integer in i64 range in `Int`.
        match self.0 {
            Repr::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as u64, only when it is a non-negative integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            Repr::Int(i) => u64::try_from(i).ok(),
            Repr::UInt(u) => Some(u),
            _ => None,
        }
    }

    /// The nearest f64 (may round; out-of-range values become infinite).
    pub fn as_f64(&self) -> f64 {
        match &self.0 {
            Repr::Int(i) => *i as f64,
            Repr::UInt(u) => *u as f64,
            Repr::Float(f) => *f,
            Repr::Decimal(d) => d.to_exponent_string().parse().unwrap_or(f64::NAN),
        }
    }

    /// True for a NaN, which cty has no room for (only `From<f64>` can make one).
    pub fn is_nan(&self) -> bool {
        matches!(self.0, Repr::Float(f) if f.is_nan())
    }

    /// Canonicalises parsed decimal digits into the normalised form.
    fn from_decimal(d: Decimal) -> Number {
        if d.digits.is_empty() {
            return Number(Repr::Int(0));
        }
        // Integers of up to 20 digits may fit i64 or u64.
        if d.exponent >= 0 && d.digits.len() as i64 + d.exponent <= 20 {
            let mut text = d.digits.clone();
            text.extend(std::iter::repeat_n('0', d.exponent as usize));
            if let Ok(magnitude) = text.parse::<u64>() {
                if !d.negative {
                    return Number::from(magnitude);
                }
                if let Ok(i) = i64::try_from(-i128::from(magnitude)) {
                    return Number(Repr::Int(i));
                }
            }
        }
        // Use an f64 when (and only when) it is exactly this decimal.
        if let Ok(f) = d.to_exponent_string().parse::<f64>() {
            if f.is_finite() && Decimal::exact_from_f64(f) == d {
                return Number::from(f);
            }
        }
        Number(Repr::Decimal(d))
    }

    /// How Terraform's own encoder writes this number: an int when it is
    /// an integer that fits i64, else an f64 when that is exact, else the
    /// decimal text.
    pub(crate) fn wire_form(&self) -> WireNumber {
        match &self.0 {
            Repr::Int(i) => WireNumber::Int(*i),
            // A u64 is an exact f64 when its significant bits fit the 53-bit mantissa.
            Repr::UInt(u) if (u >> u.trailing_zeros()) < (1 << 53) => WireNumber::Float(*u as f64),
            Repr::UInt(_) | Repr::Decimal(_) => WireNumber::Text(self.to_string()),
            Repr::Float(f) => WireNumber::Float(*f),
        }
    }
}

/// The three ways a number is encoded (see [`Number::wire_form`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WireNumber {
    Int(i64),
    Float(f64),
    Text(String),
}

impl From<i64> for Number {
    fn from(i: i64) -> Self {
        Number(Repr::Int(i))
    }
}

impl From<u64> for Number {
    fn from(u: u64) -> Self {
        match i64::try_from(u) {
            Ok(i) => Number(Repr::Int(i)),
            Err(_) => Number(Repr::UInt(u)),
        }
    }
}

impl From<i32> for Number {
    fn from(i: i32) -> Self {
        Number(Repr::Int(i.into()))
    }
}

impl From<u32> for Number {
    fn from(u: u32) -> Self {
        Number(Repr::Int(u.into()))
    }
}

impl From<f64> for Number {
    fn from(f: f64) -> Self {
        // Integral floats join the integer forms so that 5.0 == 5.
        // (`fract` is NaN for infinities and NaN, so those stay floats.)
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        if f.fract() == 0.0 {
            if (-TWO_63..TWO_63).contains(&f) {
                return Number(Repr::Int(f as i64));
            }
            if (0.0..2.0 * TWO_63).contains(&f) {
                return Number(Repr::UInt(f as u64));
            }
        }
        Number(Repr::Float(f))
    }
}

impl fmt::Display for Number {
    /// Plain decimal text as Terraform shows it (`5`, `0.1`, `9223372036854775808`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Int(i) => write!(f, "{i}"),
            Repr::UInt(u) => write!(f, "{u}"),
            // Go's big.Float spelling, which Terraform parses back.
            Repr::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "+Inf" } else { "-Inf" })
            }
            // Rust's Display is the shortest text that round-trips, never in
            // exponent form: the same as Go's `Text('f', -1)` for a float64.
            Repr::Float(x) => write!(f, "{x}"),
            Repr::Decimal(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({self})")
    }
}

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (at least one mantissa digit).
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp_text) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part)
        {
            return None;
        }
        let mut exponent: i64 = match exp_text {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return None;
                }
                // Absurd exponents overflow i64 and are rejected.
                e.parse().ok()?
            }
        };
        exponent = exponent.checked_sub(i64::try_from(frac_part.len()).ok()?)?;

        let mut digits: String = format!("{int_part}{frac_part}")
            .trim_start_matches('0')
            .to_owned();
        let trimmed = digits.trim_end_matches('0').len();
        exponent = exponent.checked_add((digits.len() - trimmed) as i64)?;
        digits.truncate(trimmed);
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        // Keep room so that printing and digit arithmetic never overflow.
        exponent.checked_add(i64::try_from(digits.len()).ok()?.checked_mul(2)?)?;
        Some(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    /// The exact decimal value of a finite f64.
    fn exact_from_f64(f: f64) -> Decimal {
        // An f64 has at most 767 significant decimal digits, and Rust formats
        // with an explicit precision exactly, so 800 digits is the exact value.
        Decimal::parse(&format!("{f:.800e}")).expect("Rust float formatting is a valid decimal")
    }

    fn to_exponent_string(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{}e{}", self.digits, self.exponent)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let len = self.digits.len() as i64;
        // Position of the decimal point counted from the left of `digits`.
        let point = len + self.exponent;
        if self.exponent >= 0 && self.exponent <= MAX_PLAIN_ZEROS {
            write!(f, "{}{}", self.digits, "0".repeat(self.exponent as usize))
        } else if self.exponent < 0 && point > 0 {
            let (int, frac) = self.digits.split_at(point as usize);
            write!(f, "{int}.{frac}")
        } else if self.exponent < 0 && -point <= MAX_PLAIN_ZEROS {
            write!(f, "0.{}{}", "0".repeat((-point) as usize), self.digits)
        } else {
            write!(f, "{}e{}", self.digits, self.exponent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn equal_numbers_compare_equal_across_forms() {
        assert_eq!(Number::from(5i64), Number::from(5.0));
        assert_eq!(Number::from(5i64), n("5"));
        assert_eq!(Number::from(5i64), n("5.000"));
        assert_eq!(Number::from(5i64), n("0.5e1"));
        assert_eq!(Number::from(500i64), n("5E2"));
        assert_eq!(Number::from(0i64), n("-0.0"));
        assert_eq!(Number::from(0i64), Number::from(-0.0));
        assert_eq!(Number::from(0.5), n("0.5"));
        assert_eq!(Number::from(0.5), n(".5"));
        assert_eq!(Number::from(1u64 << 63), n("9223372036854775808"));
        assert_eq!(
            Number::from(1u64 << 63),
            Number::from(9_223_372_036_854_775_808.0)
        );
        assert_eq!(Number::from(7u64), Number::from(7i64));
        assert_eq!(Number::from(1e20), n("100000000000000000000"));
        assert_eq!(Number::from(i64::MIN), n("-9223372036854775808"));
        assert_ne!(Number::from(5i64), Number::from(5.5));
        // The f64 nearest 0.1 is not exactly one tenth.
        assert_ne!(Number::from(0.1), n("0.1"));
    }

    #[test]
    fn as_i64_only_when_integral_and_in_range() {
        assert_eq!(Number::from(5.0).as_i64(), Some(5));
        assert_eq!(n("-42").as_i64(), Some(-42));
        assert_eq!(n("42.5").as_i64(), None);
        assert_eq!(Number::from(u64::MAX).as_i64(), None);
        assert_eq!(Number::from(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(n("-1").as_u64(), None);
        assert_eq!(n("1e400").as_i64(), None);
    }

    #[test]
    fn as_f64_is_nearest() {
        assert_eq!(n("0.1").as_f64(), 0.1);
        assert_eq!(Number::from(3i64).as_f64(), 3.0);
        assert_eq!(n("1e400").as_f64(), f64::INFINITY);
        assert_eq!(n("-1e400").as_f64(), f64::NEG_INFINITY);
    }

    #[test]
    fn display_is_plain_decimal() {
        assert_eq!(n("-12").to_string(), "-12");
        assert_eq!(Number::from(0.1).to_string(), "0.1");
        assert_eq!(Number::from(1.5e-7).to_string(), "0.00000015");
        assert_eq!(Number::from(1u64 << 63).to_string(), "9223372036854775808");
        assert_eq!(n("1e400").to_string(), format!("1{}", "0".repeat(400)));
        assert_eq!(n("-0.1").to_string(), "-0.1");
        assert_eq!(
            n("123.456789012345678901234567890").to_string(),
            "123.45678901234567890123456789"
        );
        assert_eq!(
            n("1.5e-400").to_string(),
            format!("0.{}15", "0".repeat(399))
        );
        assert_eq!(n("7e5000").to_string(), "7e5000");
        assert_eq!(n("7e-5000").to_string(), "7e-5000");
        assert_eq!(n("-Inf").to_string(), "-Inf");
        assert_eq!(Number::from(f64::INFINITY).to_string(), "+Inf");
    }

    #[test]
    fn display_parses_back_to_the_same_number() {
        for s in [
            "0",
            "-7",
            "0.1",
            "18446744073709551615",
            "18446744073709551617",
            "1e400",
            "-1.25e-400",
            "7e5000",
            "3.14159265358979323846264338327950288",
            "+Inf",
            "-Inf",
            "5e-324",
        ] {
            let x = n(s);
            assert_eq!(n(&x.to_string()), x, "{s}");
        }
        // A float prints as its shortest round-trip text, which parses back
        // as that exact decimal: the same f64, though not the same number
        // (Terraform's own parser behaves alike).
        let x = Number::from(0.1 + 0.2);
        assert_eq!(x.to_string(), "0.30000000000000004");
        assert_eq!(n(&x.to_string()).as_f64(), x.as_f64());
    }

    #[test]
    fn rejects_non_numbers() {
        for s in [
            "",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "abc",
            "1.2.3",
            "0x10",
            "1_000",
            " 1",
            "1 ",
            "NaN",
            "--1",
            "1e99999999999999999999",
        ] {
            assert!(Number::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn wire_form_follows_terraform() {
        assert_eq!(Number::from(-3i64).wire_form(), WireNumber::Int(-3));
        assert_eq!(Number::from(2.0).wire_form(), WireNumber::Int(2));
        assert_eq!(Number::from(0.1).wire_form(), WireNumber::Float(0.1));
        // 2^63 is exactly an f64; 2^63 + 1 and u64::MAX are not.
        assert_eq!(
            Number::from(1u64 << 63).wire_form(),
            WireNumber::Float(9_223_372_036_854_775_808.0)
        );
        assert_eq!(
            Number::from((1u64 << 63) + 1).wire_form(),
            WireNumber::Text("9223372036854775809".into())
        );
        assert_eq!(
            Number::from(u64::MAX).wire_form(),
            WireNumber::Text("18446744073709551615".into())
        );
        assert_eq!(
            n("1e400").wire_form(),
            WireNumber::Text(format!("1{}", "0".repeat(400)))
        );
        assert_eq!(n("0.1").wire_form(), WireNumber::Text("0.1".into()));
        // 10^22 is exactly an f64; 10^300 is not (the f64 nearest it differs).
        assert_eq!(n("1e22").wire_form(), WireNumber::Float(1e22));
        assert_eq!(
            n("1e300").wire_form(),
            WireNumber::Text(format!("1{}", "0".repeat(300)))
        );
        assert_eq!(
            n("1e23").wire_form(),
            WireNumber::Text(format!("1{}", "0".repeat(23)))
        );
    }
}
