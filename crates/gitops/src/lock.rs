//! Serializing runs that share a working directory.
//!
//! Uses an advisory OS lock on a lock file next to the workdir (`std::fs::File::try_lock`, flock(2) on
//! Unix). The kernel drops the lock when the holder exits for any reason, including `kill -9`, so there
//! is no stale-lock detection to get wrong (a create-exclusive lock file would need pid/host/age
//! heuristics and a careful break protocol) and no extra crate. The file itself is left in place; its
//! content (holder pid) is only a hint for operators.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why a lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another run held the lock for the whole wait.
    #[error("workdir lock {path} is held by another run (waited {waited:?})")]
    Busy {
        /// Lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// Lock file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock, released on drop.
#[derive(Debug)]
pub struct WorkdirLock {
    file: File,
    path: PathBuf,
}

impl WorkdirLock {
    /// Takes the lock at `path` (creating the file and its parent directory), polling until `wait`
    /// has passed or a stop signal arrives (`runtime::stop`).
    pub fn acquire(path: &Path, wait: Duration) -> Result<WorkdirLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let start = Instant::now();
        let mut nap = Duration::from_millis(5);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        return Err(LockError::Busy {
                            path: path.to_path_buf(),
                            waited: start.elapsed(),
                        });
                    }
                    if nap >= Duration::from_millis(40) {
                        log::info!("waiting for workdir lock {}", path.display());
                    }
                    // A stop signal ends the wait: the run starts nothing more (exit 75 as busy).
                    if !runtime::stop::sleep(nap.min(wait.saturating_sub(start.elapsed()))) {
                        return Err(LockError::Busy {
                            path: path.to_path_buf(),
                            waited: start.elapsed(),
                        });
                    }
                    nap = (nap * 2).min(Duration::from_millis(200));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Best effort: record the holder for whoever looks at the file.
        let _ = file
            .set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(WorkdirLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkdirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/w.lock");
        let first = WorkdirLock::acquire(&path, Duration::from_secs(1)).unwrap();
        match WorkdirLock::acquire(&path, Duration::from_millis(50)) {
            Err(LockError::Busy { .. }) => {}
            other => panic!("expected Busy, got {other:?}"),
        }
        let t = std::thread::spawn({
            let path = path.clone();
            move || WorkdirLock::acquire(&path, Duration::from_secs(10)).map(|_| ())
        });
        drop(first);
        t.join().unwrap().unwrap();
    }
}
