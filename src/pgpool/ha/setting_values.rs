//! Values of `postgresql_settings`, checked as PostgreSQL 15 parses them:
//! type, range and enum values from `postgres --describe-config` (run at
//! plan), units from `pg15_units.tsv` (`pg_settings.unit` and `enumvals` of
//! PostgreSQL 15, which `--describe-config` does not print; captured with
//! `SELECT name, unit, enumvals FROM pg_settings` and kept beside the code).
//! A value with a unit ("64MB", "5min") is converted to the parameter's
//! base unit and then range-checked, as `parse_int`/`parse_real` do.

use std::collections::HashMap;
use std::sync::OnceLock;

/// One parameter as `postgres --describe-config` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub context: String,
    pub vartype: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Param {
    /// From one tab-separated line: name, context, group, type, reset value, min, max, ...
    pub fn parse_line(line: &str) -> Option<(String, Param)> {
        let fields: Vec<&str> = line.split('\t').collect();
        let name = fields.first()?.to_string();
        let number = |i: usize| fields.get(i).and_then(|s| s.trim().parse::<f64>().ok());
        Some((
            name,
            Param {
                context: fields.get(1)?.to_string(),
                vartype: fields.get(3).unwrap_or(&"").to_string(),
                min: number(5),
                max: number(6),
            },
        ))
    }
}

struct Extra {
    unit: &'static str,
    enum_values: Vec<&'static str>,
}

fn extras() -> &'static HashMap<&'static str, Extra> {
    static EXTRAS: OnceLock<HashMap<&'static str, Extra>> = OnceLock::new();
    EXTRAS.get_or_init(|| {
        include_str!("pg15_units.tsv")
            .lines()
            .filter_map(|line| {
                let mut f = line.split('\t');
                let name = f.next()?;
                let unit = f.next().unwrap_or("");
                let values = f.next().unwrap_or("");
                Some((
                    name,
                    Extra {
                        unit,
                        enum_values: values.split(',').filter(|v| !v.is_empty()).collect(),
                    },
                ))
            })
            .collect()
    })
}

const MEMORY_UNITS: &[(&str, f64)] = &[
    ("B", 1.0),
    ("kB", 1024.0),
    ("MB", 1024.0 * 1024.0),
    ("GB", 1024.0 * 1024.0 * 1024.0),
    ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
];
const TIME_UNITS: &[(&str, f64)] = &[
    ("us", 0.001),
    ("ms", 1.0),
    ("s", 1000.0),
    ("min", 60_000.0),
    ("h", 3_600_000.0),
    ("d", 86_400_000.0),
];

/// The base unit's size in bytes or milliseconds, and which unit family.
fn base_unit(unit: &str) -> Option<(f64, &'static [(&'static str, f64)])> {
    let (count, name) = match unit.find(|c: char| !c.is_ascii_digit()) {
        Some(0) | None => (1.0, unit),
        Some(i) => (unit[..i].parse().ok()?, &unit[i..]),
    };
    for family in [MEMORY_UNITS, TIME_UNITS] {
        if let Some((_, size)) = family.iter().find(|(u, _)| *u == name) {
            return Some((count * size, family));
        }
    }
    None
}

/// A number as PostgreSQL reads it: decimal (with a fraction for reals and
/// values with units), or hexadecimal for integers.
fn number(text: &str, integer_only: bool) -> Option<f64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    if integer_only {
        return t.parse::<i64>().ok().map(|n| n as f64);
    }
    let ok = !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    ok.then(|| t.parse::<f64>().ok()).flatten().filter(|n| n.is_finite())
}

fn is_bool(text: &str) -> bool {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return false;
    }
    ["true", "false", "yes", "no"].iter().any(|w| w.starts_with(&t))
        || matches!(t.as_str(), "on" | "of" | "off" | "1" | "0")
}

fn format_range(min: f64, max: f64, unit: &str) -> String {
    let show = |n: f64| {
        if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", n as i64)
        } else {
            format!("{n}")
        }
    };
    let unit = if unit.is_empty() {
        String::new()
    } else if unit.starts_with(|c: char| c.is_ascii_digit()) {
        format!(" (units of {unit})")
    } else {
        format!("{unit}")
    };
    format!("{}{unit} and {}{unit}", show(min), show(max))
}

/// `None` when PostgreSQL would accept `value` for `name`; otherwise what
/// is wrong, said so that the user can fix it.
pub fn problem(name: &str, param: &Param, value: &str) -> Option<String> {
    let extra = extras().get(name);
    let unit = extra.map(|e| e.unit).unwrap_or("");
    match param.vartype.as_str() {
        "BOOLEAN" => (!is_bool(value)).then(|| {
            format!("{name} is a boolean: use \"on\" or \"off\" (or true/false, yes/no, 1/0), got {value:?}.")
        }),
        "ENUM" => {
            let values = extra.map(|e| e.enum_values.as_slice()).unwrap_or(&[]);
            if values.is_empty() {
                return None; // Not in the captured table: nothing to check against.
            }
            let v = value.trim().to_ascii_lowercase();
            let listed = values.iter().any(|e| e.eq_ignore_ascii_case(&v));
            // Values PostgreSQL accepts but does not list (hidden aliases).
            let hidden = (values.contains(&"on") && values.contains(&"off") && is_bool(&v))
                || (name == "wal_level" && matches!(v.as_str(), "archive" | "hot_standby"));
            (!(listed || hidden)).then(|| {
                format!(
                    "{name} must be one of {}, got {value:?}.",
                    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
                )
            })
        }
        "INTEGER" | "REAL" => {
            let integer = param.vartype == "INTEGER";
            let kind = match base_unit(unit) {
                Some((_, family)) if family == MEMORY_UNITS => "a memory size such as \"64MB\" (units B, kB, MB, GB, TB)",
                Some(_) => "a duration such as \"5min\" (units us, ms, s, min, h, d)",
                None if integer => "a whole number",
                None => "a number",
            };
            let bare = if unit.is_empty() {
                String::new()
            } else {
                format!("; a number without a unit counts {unit}")
            };
            let bad = || format!("{name} must be {kind}{bare}, got {value:?}.");
            let t = value.trim();
            // A bare number (PostgreSQL rounds a fraction for integers).
            let bare_number = number(t, false).or_else(|| number(t, true));
            let split = match bare_number {
                Some(_) => None,
                None => t.find(|c: char| c.is_ascii_alphabetic()),
            };
            let in_base = match (bare_number, split, base_unit(unit)) {
                (Some(n), _, _) => {
                    if integer { n.round() } else { n }
                }
                (None, None, _) | (None, Some(_), None) => return Some(bad()),
                (None, Some(i), Some((base_size, family))) => {
                    let (digits, given) = (t[..i].trim(), t[i..].trim());
                    let Some(n) = number(digits, false) else {
                        return Some(bad());
                    };
                    let Some((_, size)) = family.iter().find(|(u, _)| *u == given) else {
                        return Some(format!(
                            "{name}: {given:?} is no unit for it; use one of {} (case matters){bare}, got {value:?}.",
                            family.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ")
                        ));
                    };
                    let converted = n * size / base_size;
                    if integer { converted.round() } else { converted }
                }
            };
            match (param.min, param.max) {
                (Some(min), Some(max)) if in_base < min || in_base > max => Some(format!(
                    "{name} must be between {}, got {value:?}{}.",
                    format_range(min, max, unit),
                    if split.is_some() { format!(" ({in_base}{} after conversion)", if unit.starts_with(|c: char| c.is_ascii_digit()) { format!(" × {unit}") } else { unit.to_string() }) } else { String::new() }
                )),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(vartype: &str, min: f64, max: f64) -> Param {
        Param { context: "user".into(), vartype: vartype.into(), min: Some(min), max: Some(max) }
    }

    #[test]
    fn memory_and_time_values_with_units_are_converted_and_range_checked() {
        let work_mem = param("INTEGER", 64.0, 2147483647.0);
        for ok in ["64MB", "4096", "1GB", "64kB", " 8 MB", "1.5GB"] {
            assert_eq!(problem("work_mem", &work_mem, ok), None, "{ok}");
        }
        for bad in ["lots", "64mb", "32kB", "10", "3TB", "5min", "MB", ""] {
            assert!(problem("work_mem", &work_mem, bad).is_some(), "{bad}");
        }
        let timeout = param("INTEGER", 0.0, 2147483647.0);
        for ok in ["5min", "30s", "0", "1h", "250ms"] {
            assert_eq!(problem("statement_timeout", &timeout, ok), None, "{ok}");
        }
        assert!(problem("statement_timeout", &timeout, "5 minutes").is_some());
        assert!(problem("statement_timeout", &timeout, "64MB").is_some());
        let shared = param("INTEGER", 16.0, 1073741823.0);
        assert_eq!(problem("shared_buffers", &shared, "128MB"), None);
        assert!(problem("shared_buffers", &shared, "64kB").unwrap().contains("between"));
    }

    #[test]
    fn enums_booleans_and_reals() {
        let e = param("ENUM", 0.0, 0.0);
        let e = Param { min: None, max: None, ..e };
        assert_eq!(problem("wal_level", &e, "logical"), None);
        assert_eq!(problem("synchronous_commit", &e, "Remote_Apply"), None);
        assert_eq!(problem("synchronous_commit", &e, "true"), None);
        assert!(problem("synchronous_commit", &e, "sometimes").is_some());
        assert!(problem("wal_level", &e, "max").unwrap().contains("\"minimal\", \"replica\", \"logical\""));
        let b = Param { vartype: "BOOLEAN".into(), ..e.clone() };
        for ok in ["on", "off", "true", "t", "No", "1"] {
            assert_eq!(problem("jit", &b, ok), None, "{ok}");
        }
        assert!(problem("jit", &b, "maybe").is_some());
        let r = param("REAL", 0.0, 100.0);
        assert_eq!(problem("vacuum_cost_delay", &r, "2ms"), None);
        assert_eq!(problem("vacuum_cost_delay", &r, "0.5"), None);
        assert!(problem("vacuum_cost_delay", &r, "1s").is_some());
        assert!(problem("vacuum_cost_delay", &r, "fast").is_some());
    }

    #[test]
    fn describe_config_lines_parse() {
        let (name, p) = Param::parse_line("work_mem\tuser\tResource Usage / Memory\tINTEGER\t0\t64\t2147483647\tSets ...\t").unwrap();
        assert_eq!(name, "work_mem");
        assert_eq!(p, param("INTEGER", 64.0, 2147483647.0));
    }
}
