//! Finding what the contestants need: the handler binaries (and whether they are the real
//! handlers or the foundation stubs), the baseline scripts and their interpreters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::proc::{self, Spec};

/// Each entry is `Ok(path)` or `Err(why it cannot run)`, printed as `skipped: <why>`.
pub struct Tools {
    pub kv2jobs: Result<PathBuf, String>,
    pub tasks2consul: Result<PathBuf, String>,
    pub tag2git: Result<PathBuf, String>,
    /// bash, with jq, base64 and curl on PATH.
    pub bash: Result<PathBuf, String>,
    pub python: Result<PathBuf, String>,
    pub git: Result<PathBuf, String>,
    pub cat: Result<PathBuf, String>,
    /// This binary: `bench --noop` drains stdin and exits (the Rust floor).
    pub noop: Result<PathBuf, String>,
    pub baselines: PathBuf,
    /// GNU time, for peak RSS.
    pub gnu_time: Result<PathBuf, String>,
}

impl Tools {
    pub fn find(bin_dir: &Path, baselines: PathBuf) -> Tools {
        let need = |tool: &str| which(tool).ok_or_else(|| format!("`{tool}` is not on PATH"));
        let bash = need("bash").and_then(|b| {
            for t in ["jq", "base64", "curl"] {
                need(t)?;
            }
            Ok(b)
        });
        Tools {
            // The flag each probe looks for exists only in the real handler, not in the
            // foundation stub that main carries until the handler is merged.
            kv2jobs: handler(bin_dir, "kv2jobs", "--prefix"),
            tasks2consul: handler(bin_dir, "tasks2consul", "--mode"),
            tag2git: handler(bin_dir, "tag2git", "--workdir"),
            bash,
            python: need("python3").and_then(real_python),
            git: need("git"),
            cat: need("cat"),
            noop: std::env::current_exe().map_err(|e| format!("current_exe: {e}")),
            baselines,
            gnu_time: gnu_time(),
        }
    }

    pub fn baseline(&self, name: &str) -> Result<PathBuf, String> {
        let p = self.baselines.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("baseline {} not found", p.display()))
        }
    }
}

/// The directory of the handler binaries: `--bin-dir`, else `SHIPWATCH_BIN_DIR`, else this
/// executable's own target directory (`target/release/` under `cargo run --release`).
pub fn bin_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    if let Ok(d) = devstack::bins::handler_dir() {
        return d;
    }
    if let Ok(d) = std::env::var("SHIPWATCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let mut dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    if dir.file_name().and_then(|n| n.to_str()) == Some("deps") {
        dir.pop();
    }
    dir
}

fn handler(dir: &Path, name: &str, flag: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(format!(
            "{name} is not built (cargo build --release --workspace, or --bin-dir)"
        ));
    }
    let help = proc::run(
        &Spec::new(&path, Arc::new(Vec::new())).arg("--help"),
        Duration::from_secs(10),
    )
    .map_err(|e| format!("{name} --help: {e}"))?;
    if String::from_utf8_lossy(&help.stdout).contains(flag) {
        Ok(path)
    } else {
        Err(format!(
            "{name} has no {flag} flag (a stub: the handler is not merged into this build yet)"
        ))
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// pyenv and similar put a shell shim first on PATH; run the interpreter itself so the baseline
/// is not charged for the shim (tens of milliseconds per start).
fn real_python(shim: PathBuf) -> Result<PathBuf, String> {
    let out = proc::run(
        &Spec::new(&shim, Arc::new(Vec::new())).args(["-c", "import sys; print(sys.executable)"]),
        Duration::from_secs(20),
    )
    .map_err(|e| format!("python3: {e}"))?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.success() && Path::new(&exe).is_file() {
        Ok(PathBuf::from(exe))
    } else {
        Err(format!("python3 does not run: {}", out.stderr_tail()))
    }
}

fn gnu_time() -> Result<PathBuf, String> {
    let time = PathBuf::from("/usr/bin/time");
    let out = std::process::Command::new(&time)
        .arg("--version")
        .output()
        .map_err(|e| format!("/usr/bin/time: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if text.contains("GNU") {
        Ok(time)
    } else {
        Err("/usr/bin/time is not GNU time".into())
    }
}
