//! Issue 17: TLS like Consul's own CLI, for every remote. The built handlers against devstack
//! doubles behind a TLS front that requires a client certificate from a local CA:
//! MARATHON_CACERT / MARATHON_CLIENT_CERT / MARATHON_CLIENT_KEY, and for Consul the CONSUL_
//! equivalents plus CONSUL_TLS_SERVER_NAME (a certificate for `consul.test`, reached by IP).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use devstack::consul::{Consul, ConsulOptions};
use devstack::marathon::{Marathon, MarathonOptions};
use devstack::tls::{TestPki, TlsFront};
use serde_json::{json, Value};

fn payload() -> Vec<u8> {
    let app = json!({"id": "/tls/app", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 1});
    let kv = |k: &str, i: u64, v: &str| {
        json!({"Key": k, "CreateIndex": i, "ModifyIndex": i, "LockIndex": 0, "Flags": 0,
               "Value": base64::engine::general_purpose::STANDARD.encode(v)})
    };
    serde_json::to_vec(&json!([
        kv("jobs/main/tls/app.json", 10, &app.to_string()),
        kv("jobs/main.ref", 11, "0123abcd")
    ]))
    .unwrap()
}

fn kv2jobs(args: &[&str], env: &[(&str, String)]) -> (i32, Value, String) {
    let bin = devstack::bins::handler_dir().unwrap().join("kv2jobs");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--prefix",
        "jobs/main/",
        "--output",
        "json",
        "--timeout",
        "30s",
    ])
    .args(args)
    .env_remove("CHRONOS_URL")
    .env_remove("SHIPWATCH_NOTIFY");
    for v in [
        "MARATHON_CACERT",
        "MARATHON_CLIENT_CERT",
        "MARATHON_CLIENT_KEY",
        "CONSUL_CACERT",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
        "CONSUL_TLS_SERVER_NAME",
        "CONSUL_HTTP_ADDR",
        "MARATHON_URL",
    ] {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&payload()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), doc, stderr)
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn marathon_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let front = TlsFront::start(marathon.addr(), &pki, true).unwrap();
    let base = |cert: &std::path::Path, key: &std::path::Path| {
        vec![
            ("MARATHON_URL", front.url()),
            ("MARATHON_CACERT", path(&pki.ca_cert)),
            ("MARATHON_CLIENT_CERT", path(cert)),
            ("MARATHON_CLIENT_KEY", path(key)),
        ]
    };
    // A client certificate of another CA is refused at the handshake: unavailable, nothing done.
    let (code, doc, _) = kv2jobs(&[], &base(&pki.stranger_cert, &pki.stranger_key));
    assert_eq!(code, 69, "{doc}");
    assert!(doc["errors"].to_string().contains("marathon"), "{doc}");
    assert_eq!(marathon.write_count(), 0);
    // Without any client certificate: the same.
    let env = vec![
        ("MARATHON_URL", front.url()),
        ("MARATHON_CACERT", path(&pki.ca_cert)),
    ];
    assert_eq!(kv2jobs(&[], &env).0, 69);
    // The web roots do not know the local CA.
    let env = vec![
        ("MARATHON_URL", front.url()),
        ("MARATHON_CLIENT_CERT", path(&pki.client_cert)),
        ("MARATHON_CLIENT_KEY", path(&pki.client_key)),
    ];
    assert_eq!(kv2jobs(&[], &env).0, 69);
    // Half a client certificate is a usage error.
    let env = vec![
        ("MARATHON_URL", front.url()),
        ("MARATHON_CLIENT_CERT", path(&pki.client_cert)),
    ];
    let (code, doc, _) = kv2jobs(&[], &env);
    assert_eq!(code, 64, "{doc}");
    assert!(
        doc["errors"].to_string().contains("MARATHON_CLIENT_KEY"),
        "{doc}"
    );
    // With ours: deployed over mutual TLS.
    let (code, doc, stderr) = kv2jobs(&[], &base(&pki.client_cert, &pki.client_key));
    assert_eq!(code, 0, "{doc} {stderr}");
    assert_eq!(doc["actions"][0]["status"], "applied", "{doc}");
    assert!(marathon.app("/tls/app").is_some());
}

#[test]
fn consul_over_tls_with_a_client_certificate_and_a_server_name() {
    let dir = tempfile::tempdir().unwrap();
    // Like a Consul agent's certificate: a name (server.dc1.consul style), not the IP.
    let pki = TestPki::generate(dir.path(), &["consul.test"]).unwrap();
    let consul = Consul::start(ConsulOptions::default()).unwrap();
    let marathon = Marathon::start(MarathonOptions::default()).unwrap();
    let front = TlsFront::start(consul.addr(), &pki, true).unwrap();
    let mut env = vec![
        ("MARATHON_URL", marathon.url()),
        ("CONSUL_HTTP_ADDR", front.url()),
        ("CONSUL_CACERT", path(&pki.ca_cert)),
        ("CONSUL_CLIENT_CERT", path(&pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&pki.client_key)),
    ];
    // Reached by IP, the certificate's name does not match: the lock cannot be taken.
    let (code, doc, _) = kv2jobs(&["--lock", "shipwatch/locks/tls"], &env);
    assert_ne!(code, 0, "{doc}");
    assert_eq!(marathon.write_count(), 0);
    env.push(("CONSUL_TLS_SERVER_NAME", "consul.test".into()));
    let (code, doc, stderr) = kv2jobs(
        &["--lock", "shipwatch/locks/tls", "--datacenter", "dc1"],
        &env,
    );
    assert_eq!(code, 0, "{doc} {stderr}");
    assert!(stderr.contains("acquired lock"), "{stderr}");
    assert!(marathon.app("/tls/app").is_some());
}
