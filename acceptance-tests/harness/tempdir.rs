//! A minimal temporary directory, removed on drop (the crate has no
//! `tempfile` dev-dependency and the harness needs little of it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

/// A uniquely named directory that is deleted, with its contents, on drop
/// unless [`TempDir::keep`] was called.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `PARENT/PREFIX-PID-SEQ`. `create_dir` (not `create_dir_all`)
    /// makes the name ours alone even across processes.
    pub fn new(parent: &Path, prefix: &str) -> io::Result<TempDir> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(parent)?;
        loop {
            let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{prefix}-{}-{seq}", process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory on disk when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Never panic in drop: it may run while a failed test unwinds.
            Err(e) => eprintln!("harness: could not remove {}: {e}", self.path.display()),
        }
    }
}
