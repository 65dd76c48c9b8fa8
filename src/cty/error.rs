//! The error both codecs report: what is wrong, and where in the value.

use std::fmt;

/// A value that does not match its type, or malformed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    path: String,
    message: String,
}

impl CodecError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        CodecError {
            path: String::new(),
            message: message.into(),
        }
    }

    /// Where in the value the problem is, e.g. `.workers[1].port` (empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes a path step; errors are built innermost first, so steps are
    /// prepended while the error travels outwards.
    pub(super) fn within(mut self, step: Step<'_>) -> Self {
        self.path.insert_str(0, &step.to_string());
        self
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CodecError {}

/// One step of a path into a value (shared with the JSON codec).
pub(super) enum Step<'a> {
    Attr(&'a str),
    Index(usize),
    Key(&'a str),
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Attr(name) => write!(f, ".{name}"),
            Step::Index(i) => write!(f, "[{i}]"),
            Step::Key(key) => write!(f, "[{key:?}]"),
        }
    }
}
