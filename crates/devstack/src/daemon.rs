//! A long-running handler process next to the doubles (`tasks2consul --follow`): its stderr
//! collected line by line while it runs, stopped with SIGTERM as `systemctl stop` does, killed
//! when dropped (a test that fails never leaves it behind). Used by the demo and by tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Spawns `cmd` (stdin closed, stdout and stderr piped; stderr is collected).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Daemon> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Ok(Daemon {
            child: Some(child),
            log,
        })
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many stderr lines contain `text`.
    pub fn lines_with(&self, text: &str) -> usize {
        self.log().lines().filter(|l| l.contains(text)).count()
    }

    /// SIGTERM, then its exit code (`None`: killed by a signal) within `limit`; killed and an
    /// error after that.
    pub fn terminate(&mut self, limit: Duration) -> std::io::Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // kill(1) with an argument vector: no shell, no libc binding needed.
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st.code());
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no exit within {limit:?} of SIGTERM"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash (nothing released, nothing flushed).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.crash();
    }
}
