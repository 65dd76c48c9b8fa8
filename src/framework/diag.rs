//! Diagnostics with attribute paths: how every error reaches the user.

use std::fmt;

/// One step of an attribute path, as Terraform's `AttributePath.Step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Attribute(String),
    /// A map key (map attributes and `worker "name" {}` style map blocks).
    Key(String),
    /// A list or tuple index.
    Index(i64),
}

/// Where in the configuration a diagnostic points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrPath(pub Vec<PathStep>);

impl AttrPath {
    pub fn root(name: &str) -> Self {
        AttrPath(vec![PathStep::Attribute(name.to_string())])
    }

    pub fn attr(&self, name: &str) -> Self {
        self.with(PathStep::Attribute(name.to_string()))
    }

    pub fn key(&self, key: &str) -> Self {
        self.with(PathStep::Key(key.to_string()))
    }

    pub fn index(&self, index: usize) -> Self {
        self.with(PathStep::Index(index as i64))
    }

    fn with(&self, step: PathStep) -> Self {
        let mut steps = self.0.clone();
        steps.push(step);
        AttrPath(steps)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                PathStep::Attribute(name) if i == 0 => write!(f, "{name}")?,
                PathStep::Attribute(name) => write!(f, ".{name}")?,
                PathStep::Key(key) => write!(f, "[{key:?}]")?,
                PathStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub path: Option<AttrPath>,
}

/// An ordered collection of diagnostics. Code appends and keeps going where it
/// can, so one run reports every problem it finds.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Error, None, summary, detail);
    }

    pub fn error_at(
        &mut self,
        path: AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Severity::Error, Some(path), summary, detail);
    }

    pub fn warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Warning, None, summary, detail);
    }

    pub fn warning_at(
        &mut self,
        path: AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Severity::Warning, Some(path), summary, detail);
    }

    fn push(
        &mut self,
        severity: Severity,
        path: Option<AttrPath>,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.0.push(Diagnostic {
            severity,
            summary: summary.into(),
            detail: detail.into(),
            path,
        });
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_terraform_addresses() {
        let path = AttrPath::root("worker").key("w1").attr("port");
        assert_eq!(path.to_string(), "worker[\"w1\"].port");
        assert_eq!(
            AttrPath::root("read_replica").index(2).to_string(),
            "read_replica[2]"
        );
    }
}
