//! Finding the handler binaries that the watch runner starts, as an agent finds them on `PATH`.

use std::path::{Path, PathBuf};

pub const HANDLERS: [&str; 3] = ["tag2git", "kv2jobs", "tasks2consul"];

/// Where the shipped watch configs (consul-config/) expect the handlers to be installed.
pub const INSTALL_DIR: &str = "/usr/local/bin";

/// The built binary for a watch's `args[0]` that names an installed handler
/// (`/usr/local/bin/kv2jobs` → `<bin_dir>/kv2jobs`), so the devstack runs the shipped configs
/// against the handlers of this checkout. Any other program is left to the runner's lookup.
pub fn local_handler(program: &str, bin_dir: &Path) -> Option<PathBuf> {
    let name = program.strip_prefix(INSTALL_DIR)?.strip_prefix('/')?;
    HANDLERS.contains(&name).then(|| bin_dir.join(name))
}

/// Points every installed-handler `args[0]` of `specs` at `bin_dir` ([`local_handler`]).
pub fn use_local_handlers(specs: &mut [crate::runner::WatchSpec], bin_dir: &Path) {
    for spec in specs {
        if let Some(local) = spec.args.first().and_then(|p| local_handler(p, bin_dir)) {
            spec.args[0] = local.display().to_string();
        }
    }
}

/// The directory holding the built handlers: `SHIPWATCH_BIN_DIR` when set, else the cargo target
/// directory of the running executable (`target/<profile>/`, also from `target/<profile>/deps/`).
pub fn handler_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("SHIPWATCH_BIN_DIR") {
        return check(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe
        .parent()
        .ok_or("executable has no parent directory")?
        .to_path_buf();
    if dir.file_name().and_then(|n| n.to_str()) == Some("deps") {
        dir.pop();
    }
    check(dir)
}

fn check(dir: PathBuf) -> Result<PathBuf, String> {
    let missing: Vec<&str> = HANDLERS
        .iter()
        .copied()
        .filter(|h| !dir.join(h).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!(
            "handler binaries {} not found in {} (build them with `cargo build --workspace`, or set SHIPWATCH_BIN_DIR)",
            missing.join(", "),
            dir.display()
        ))
    }
}

/// When started by `cargo run` (CARGO is set), builds the handlers in the same profile first so
/// `cargo run --release --bin devstack -- demo` needs no other step. `cargo run` has exec'ed this
/// process, so cargo's build lock is free.
pub fn build_handlers_if_run_by_cargo(release: bool) -> Result<(), String> {
    let Ok(cargo) = std::env::var("CARGO") else {
        return Ok(());
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest);
    if release {
        cmd.arg("--release");
    }
    for h in HANDLERS {
        cmd.arg("-p").arg(h);
    }
    let status = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build of the handlers failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_handlers_map_to_the_built_ones() {
        let bin = Path::new("/build/target/debug");
        assert_eq!(
            local_handler("/usr/local/bin/kv2jobs", bin),
            Some(bin.join("kv2jobs"))
        );
        assert_eq!(local_handler("/usr/local/bin/other", bin), None);
        assert_eq!(local_handler("/usr/local/bin/kv2jobsx", bin), None);
        assert_eq!(local_handler("kv2jobs", bin), None);
        assert_eq!(local_handler("/opt/bin/kv2jobs", bin), None);
    }
}
