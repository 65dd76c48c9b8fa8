//! Timing, statistics and the printed table: every case is a series of
//! rounds, the subject and its baseline alternating (the order swapped every
//! other round, so a drift of the machine weighs on both alike).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Seconds spent in `f`, and its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let out = f();
    (started.elapsed().as_secs_f64(), out)
}

/// Runs `rounds` rounds of `subject` and `baseline`, alternating; each closure
/// returns the seconds of its timed part (set-up may come before it, untimed).
pub fn alternate(
    rounds: usize,
    label: &str,
    mut subject: impl FnMut(usize) -> f64,
    mut baseline: impl FnMut(usize) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut s, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            s.push(subject(round));
            b.push(baseline(round));
        } else {
            b.push(baseline(round));
            s.push(subject(round));
        }
        progress(&format!(
            "{label}: round {}/{rounds}: {:.3}s vs baseline {:.3}s",
            round + 1,
            s[round],
            b[round]
        ));
    }
    (s, b)
}

pub fn progress(line: &str) {
    println!("  .. {line}");
}

#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

pub fn stats(values: &[f64]) -> Stats {
    assert!(!values.is_empty(), "no measurements");
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Stats { min: v[0], median, max: v[n - 1] }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} / {:.3} / {:.3}", self.min, self.median, self.max)
    }
}

/// One line of the final table.
pub struct Row {
    pub case: String,
    pub subject: String,
    pub subject_stats: Stats,
    pub baseline: String,
    pub baseline_stats: Option<Stats>,
    /// The ratio the target is about (not always the raw ratio of medians).
    pub ratio: Option<f64>,
    pub ratio_label: String,
    /// The ratio's limit from the tracker issue.
    pub target: Option<f64>,
    pub notes: Vec<String>,
}

impl Row {
    pub fn verdict(&self) -> &'static str {
        match (self.ratio, self.target) {
            (Some(r), Some(t)) if r <= t => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "-",
        }
    }
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

pub fn record(row: Row) {
    println!("{}", render(std::slice::from_ref(&row)));
    ROWS.lock().unwrap().push(row);
}

pub fn all_rows() -> String {
    render(&ROWS.lock().unwrap())
}

fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(out, "[{}]", row.case);
        let _ = writeln!(out, "  {:<44} {} s (min/median/max)", row.subject, row.subject_stats);
        if let Some(b) = row.baseline_stats {
            let _ = writeln!(out, "  {:<44} {} s", row.baseline, b);
        }
        if let Some(r) = row.ratio {
            let target = row.target.map(|t| format!("  target <= {t:.2}x: {}", row.verdict())).unwrap_or_default();
            let _ = writeln!(out, "  {:<44} {:.2}x{}", row.ratio_label, r, target);
        }
        for note in &row.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}
