//! Logging the way go-plugin's client reads it: one JSON object a line on
//! stderr, with `@level`, `@message`, `@module` and `@timestamp`. Terraform
//! re-logs each line at its level and filters by `TF_LOG` / `TF_LOG_PROVIDER`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Caps for dependencies' log records, by crate. Their trace output drowns
/// ours; rustls says the same few lines on every connection; tokio_postgres'
/// debug lines carry SQL text, which can hold passwords (`ALTER ROLE ...
/// PASSWORD` cannot take bind parameters), so it never logs below info.
const DEPENDENCY_CAPS: &[(&str, LevelFilter)] = &[
    ("tokio_postgres", LevelFilter::Info),
    ("postgres_protocol", LevelFilter::Info),
    ("rustls", LevelFilter::Info),
    ("tokio_rustls", LevelFilter::Info),
    ("h2", LevelFilter::Debug),
    ("hyper", LevelFilter::Debug),
    ("hyper_util", LevelFilter::Debug),
    ("tonic", LevelFilter::Debug),
    ("tower", LevelFilter::Debug),
    ("tokio_util", LevelFilter::Debug),
    ("mio", LevelFilter::Debug),
    ("want", LevelFilter::Debug),
];

/// Installs the JSON logger as the global `log` logger (once; later calls do
/// nothing). `module` appears as `@module`, e.g. `shardform.citus`.
pub fn init(module: &str) {
    let level = level_from_env(
        std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
        std::env::var("TF_LOG").ok().as_deref(),
    );
    let logger = JsonLogger {
        module: module.to_owned(),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// `TF_LOG_PROVIDER` wins over `TF_LOG`; Terraform's names (TRACE, DEBUG, INFO,
/// WARN, ERROR, JSON = trace as JSON, OFF) in any case; unset or unknown: info.
fn level_from_env(tf_log_provider: Option<&str>, tf_log: Option<&str>) -> LevelFilter {
    [tf_log_provider, tf_log]
        .into_iter()
        .flatten()
        .find_map(parse_level)
        .unwrap_or(LevelFilter::Info)
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    match value.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => Some(LevelFilter::Trace),
        "DEBUG" => Some(LevelFilter::Debug),
        "INFO" => Some(LevelFilter::Info),
        "WARN" => Some(LevelFilter::Warn),
        "ERROR" => Some(LevelFilter::Error),
        "OFF" => Some(LevelFilter::Off),
        _ => None,
    }
}

struct JsonLogger {
    module: String,
    level: LevelFilter,
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && metadata.level() <= module_cap(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format_record(&self.module, record, SystemTime::now());
        line.push('\n');
        // One write per line so concurrent records never interleave; a failed
        // write to stderr has nowhere better to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn module_cap(target: &str) -> LevelFilter {
    let crate_name = target.split("::").next().unwrap_or(target);
    DEPENDENCY_CAPS
        .iter()
        .find(|(name, _)| *name == crate_name)
        .map_or(LevelFilter::Trace, |&(_, cap)| cap)
}

fn format_record(module: &str, record: &Record<'_>, now: SystemTime) -> String {
    serde_json::json!({
        "@level": level_name(record.level()),
        "@message": record.args().to_string(),
        "@module": module,
        "@timestamp": format_timestamp(now),
    })
    .to_string()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Go's `2006-01-02T15:04:05.000000Z07:00` in UTC, which go-plugin parses.
fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let secs_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`, on eras of 400 years.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month, counted from March
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn timestamps_in_go_layout() {
        assert_eq!(format_timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        // Go's reference time, 2006-01-02T15:04:05Z.
        assert_eq!(
            format_timestamp(at(1_136_214_245, 7)),
            "2006-01-02T15:04:05.000007Z"
        );
        // A leap day and the last second of a century leap year.
        assert_eq!(
            format_timestamp(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            format_timestamp(at(978_307_199, 999_999)),
            "2000-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            format_timestamp(at(4_102_444_800, 0)),
            "2100-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn civil_dates_round_trip_day_by_day() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > month_len[m as usize - 1] {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }

    #[test]
    fn record_is_one_json_object() {
        let line = format_record(
            "shardform.citus",
            &Record::builder()
                .level(Level::Warn)
                .target("shardform::citus")
                .args(format_args!("quote \" and\nnewline"))
                .build(),
            at(1_136_214_245, 0),
        );
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["@level"], "warn");
        assert_eq!(value["@message"], "quote \" and\nnewline");
        assert_eq!(value["@module"], "shardform.citus");
        assert_eq!(value["@timestamp"], "2006-01-02T15:04:05.000000Z");
    }

    #[test]
    fn level_from_terraform_variables() {
        assert_eq!(level_from_env(None, None), LevelFilter::Info);
        assert_eq!(level_from_env(None, Some("trace")), LevelFilter::Trace);
        assert_eq!(level_from_env(None, Some("JSON")), LevelFilter::Trace);
        assert_eq!(
            level_from_env(Some("ERROR"), Some("TRACE")),
            LevelFilter::Error
        );
        assert_eq!(
            level_from_env(Some("bogus"), Some("WARN")),
            LevelFilter::Warn
        );
        assert_eq!(level_from_env(Some(""), None), LevelFilter::Info);
    }

    #[test]
    fn dependencies_are_capped() {
        let logger = JsonLogger {
            module: "m".into(),
            level: LevelFilter::Trace,
        };
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(!logger.enabled(&meta(Level::Trace, "h2::codec")));
        assert!(logger.enabled(&meta(Level::Debug, "hyper::proto")));
        assert!(!logger.enabled(&meta(Level::Debug, "rustls::server::hs")));
        assert!(!logger.enabled(&meta(Level::Debug, "tokio_postgres::simple_query")));
        assert!(logger.enabled(&meta(Level::Warn, "tokio_postgres::connection")));
        assert!(logger.enabled(&meta(Level::Trace, "shardform::plugin")));
        // "h2o" is not "h2".
        assert!(logger.enabled(&meta(Level::Trace, "h2o")));
    }
}
