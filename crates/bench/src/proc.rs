//! Running one measured process: stdin fed from memory, stdout/stderr drained, a hard timeout,
//! wall time from just before `spawn` to the child's exit, and the peak RSS the kernel recorded.
//!
//! Peak memory is GNU time's `%M` (`/usr/bin/time -f %M -o FILE cmd...`): `ru_maxrss` from
//! `wait4(2)`, the largest resident set of the process itself or of any descendant it waited
//! for, so a shell pipeline reports its biggest single process (jq, curl, bash), not a sum.
//! Why not read `ru_maxrss` here directly: Linux carries the RSS high-water mark of the process
//! that calls `execve` over into the new program, so every child of this (large) bench process
//! would report at least the bench's own RSS. GNU time is a small process, so its children
//! start from its ~2 MiB, as they would from a Consul agent's small fork. The wrapper's own
//! fork+exec (about a millisecond) is inside every measured wall time, the floor's included.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Arc<Vec<u8>>,
    /// stdout to /dev/null instead of a pipe the bench drains (the floor's `cat > /dev/null`).
    pub stdout_null: bool,
}

impl Spec {
    pub fn new(program: impl Into<PathBuf>, stdin: Arc<Vec<u8>>) -> Spec {
        Spec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin,
            stdout_null: false,
        }
    }

    pub fn discard_stdout(mut self) -> Spec {
        self.stdout_null = true;
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Spec {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Spec {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// How a measured process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Code(i32),
    Signal(i32),
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub wall: Duration,
    /// `None` without GNU time.
    pub max_rss_kib: Option<u64>,
    pub end: End,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.end == End::Code(0)
    }

    /// The last line of stderr (for a failure's explanation), trimmed.
    pub fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(160)
            .collect()
    }
}

static GNU_TIME: OnceLock<PathBuf> = OnceLock::new();

/// Measure peak RSS by running every process under this GNU time binary.
pub fn use_gnu_time(path: PathBuf) {
    let _ = GNU_TIME.set(path);
}

/// Runs `spec` to its end or `timeout`, whichever comes first (then the whole process group is
/// killed). The child leads its own process group so a timed-out shell takes its jq/curl with it.
pub fn run(spec: &Spec, timeout: Duration) -> std::io::Result<Outcome> {
    let rss_file = match GNU_TIME.get() {
        Some(_) => Some(tempfile::NamedTempFile::new()?),
        None => None,
    };
    let mut cmd = match (GNU_TIME.get(), &rss_file) {
        (Some(time), Some(f)) => {
            let mut c = Command::new(time);
            c.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(f.path())
                .arg(&spec.program);
            c
        }
        _ => Command::new(&spec.program),
    };
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(if spec.stdout_null {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;

    // Feed and drain on threads: a 10 MB payload does not fit a pipe buffer, and a child that
    // blocks writing its output would otherwise never exit.
    let feeder = child.stdin.take().map(|mut w| {
        let data = Arc::clone(&spec.stdin);
        std::thread::spawn(move || {
            // A handler may exit without reading everything (EPIPE): that is its business.
            let _ = w.write_all(&data);
        })
    });
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);

    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let watchdog = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (lock, cv) = &*done;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, res) = cv
                .wait_timeout_while(guard, timeout, |d| !*d)
                .unwrap_or_else(|e| e.into_inner());
            if res.timed_out() && !*guard {
                // The child is not reaped yet (see below), so its pid/pgid cannot be reused.
                unsafe { libc::killpg(pid, libc::SIGKILL) };
                return true;
            }
            false
        })
    };

    // Wait for the exit without reaping (WNOWAIT): the wall time stops here, and the watchdog
    // can still signal the group safely until `done` is set.
    wait_exited(pid)?;
    let wall = start.elapsed();
    {
        let (lock, cv) = &*done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
    let timed_out = watchdog.join().unwrap_or(false);
    // Stragglers (a background child of a shell) must not keep the output pipes open.
    unsafe { libc::killpg(pid, libc::SIGKILL) };
    let status = reap(pid)?;
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = out
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = err
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let es = std::process::ExitStatus::from_raw(status);
    let end = if timed_out {
        End::TimedOut
    } else if let Some(c) = es.code() {
        End::Code(c)
    } else {
        End::Signal(es.signal().unwrap_or(0))
    };
    Ok(Outcome {
        wall,
        max_rss_kib: rss_file
            .and_then(|f| parse_time_output(&std::fs::read_to_string(f.path()).ok()?)),
        end,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn wait_exited(pid: libc::pid_t) -> std::io::Result<()> {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn reap(pid: libc::pid_t) -> std::io::Result<i32> {
    loop {
        let mut status = 0;
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// GNU time's `-o` file: `%M` on the last line, after a `Command exited with non-zero status N`
/// or `Command terminated by signal N` line when there is one.
fn parse_time_output(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_time_output() {
        assert_eq!(parse_time_output("2048\n"), Some(2048));
        assert_eq!(
            parse_time_output("Command exited with non-zero status 65\n7352\n"),
            Some(7352)
        );
        assert_eq!(parse_time_output(""), None);
    }

    #[test]
    fn feeds_stdin_and_reports_the_exit_code() {
        let spec =
            Spec::new("sh", Arc::new(b"hello".to_vec())).args(["-c", "cat; echo oops >&2; exit 3"]);
        let o = run(&spec, Duration::from_secs(20)).unwrap();
        assert_eq!(o.end, End::Code(3));
        assert_eq!(o.stdout, b"hello");
        assert_eq!(o.stderr_tail(), "oops");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        // The background sleep holds stdout open: run() only returns once the group is gone.
        let spec = Spec::new("sh", Arc::new(Vec::new())).args(["-c", "sleep 30 & sleep 30"]);
        let start = Instant::now();
        let o = run(&spec, Duration::from_millis(200)).unwrap();
        assert_eq!(o.end, End::TimedOut);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
}
