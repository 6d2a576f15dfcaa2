//! End-to-end tests live in tests/tests/*.rs; this library holds what several of them share.

/// `kv2jobs --lock` runs as several agents start them: the one-app payload they all get, the
/// spawn (payload on stdin, endpoints in the environment) and the wait for its JSON summary.
pub mod lock {
    use std::io::Write;
    use std::process::{Child, Command, Stdio};

    use serde_json::Value;

    /// The lock key every contending run takes.
    pub const KEY: &str = "shipwatch/locks/kv2jobs";

    /// A keyprefix payload of one Marathon app config under `jobs/main/`.
    pub fn payload(app_id: &str) -> Vec<u8> {
        let app = format!(r#"{{"id":"{app_id}","cmd":"sleep 1000","instances":1}}"#);
        let value = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, app);
        format!(
            r#"[{{"Key":"jobs/main/a.json","CreateIndex":5,"ModifyIndex":5,"LockIndex":0,"Flags":0,"Value":"{value}","Session":""}}]"#
        )
        .into_bytes()
    }

    /// Starts `kv2jobs --lock KEY` against `consul` and `marathon` with `stdin` written.
    pub fn spawn_kv2jobs(consul: &str, marathon: &str, extra: &[&str], stdin: &[u8]) -> Child {
        let bin = devstack::bins::handler_dir().unwrap().join("kv2jobs");
        let mut child = Command::new(bin)
            .args([
                "--prefix",
                "jobs/main/",
                "--output",
                "json",
                "--timeout",
                "60s",
            ])
            .args(["--lock", KEY])
            .args(extra)
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CHRONOS_URL")
            .env("CONSUL_HTTP_ADDR", consul)
            .env("MARATHON_URL", marathon)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child
    }

    /// Waits for a run: (exit code, its one JSON summary, stderr).
    pub fn finish(child: Child) -> (i32, Value, String) {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}); stderr: {stderr}"));
        (out.status.code().unwrap_or(-1), summary, stderr)
    }
}
