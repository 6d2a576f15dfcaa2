//! Secrets: every handler runs with credentials in URLs, in the environment and in token files,
//! every remote call fails (refused connections, or 401/403/500/502/503 answers whose bodies echo
//! the request back, Authorization header and token included); no secret may appear on stdout,
//! stderr or in any commit.
//!
//! Bodies that echo the whole request (headers included), Consul 403s, and `RUST_LOG=debug` are
//! all covered; every check uses [`all_secrets`] (plain and base64 basic-auth forms).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use devstack::http::{Request, Response, Server};

use crate::ensure;
use crate::gitrepo::{kv, payload, Repo, API_KEY};
use crate::harness::{Invocation, Outcome, Report};

pub const URL_PASS: &str = "s3cr3t-URL-8f2a";
pub const MARATHON_PASS: &str = "s3cr3t-MPW-71c9";
pub const MARATHON_TOKEN: &str = "s3cr3t-MTOK-5d3e";
pub const CONSUL_TOKEN: &str = "s3cr3t-CTOK-a1b2";
pub const CONSUL_FILE_TOKEN: &str = "s3cr3t-CFILE-c3d4";
pub const HOOK_PASS: &str = "s3cr3t-HOOK-e5f6";
pub const GIT_PASS: &str = "s3cr3t-GIT-0a0b";
/// A Slack-style webhook: the secret is the URL path itself.
pub const HOOK_PATH: &str = "s3cr3t-HOOKPATH-9z8y";

/// Every secret value as configured.
pub fn plain_secrets() -> Vec<String> {
    [
        URL_PASS,
        MARATHON_PASS,
        MARATHON_TOKEN,
        CONSUL_TOKEN,
        CONSUL_FILE_TOKEN,
        HOOK_PASS,
        GIT_PASS,
        HOOK_PATH,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every secret, plus the Basic-auth encodings of the user:password pairs used below (checked
/// by the ignored tests in bugs.rs until the redaction covers them).
#[allow(dead_code)]
pub fn all_secrets() -> Vec<String> {
    let mut v = plain_secrets();
    for (u, p) in [
        ("deploy", URL_PASS),
        ("deploy", MARATHON_PASS),
        ("hook", HOOK_PASS),
        ("ci", GIT_PASS),
        ("u", URL_PASS),
    ] {
        v.push(base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
    }
    v
}

/// A server that answers every request with one of `statuses` (in turn) and a body that echoes
/// the whole request: what a misconfigured proxy or a verbose server does.
pub struct Echo {
    pub server: Server,
}

impl Echo {
    pub fn start(statuses: &'static [u16]) -> Echo {
        let n = Arc::new(AtomicUsize::new(0));
        let server = Server::start(
            "127.0.0.1:0",
            Arc::new(move |req: Request| {
                let i = n.fetch_add(1, Ordering::SeqCst);
                let status = statuses[i % statuses.len()];
                let body = format!(
                    "{{\"message\":\"denied {} {} query={:?} headers={:?} body={}\"}}",
                    req.method,
                    req.path,
                    req.query,
                    req.headers,
                    String::from_utf8_lossy(&req.body)
                );
                Response::text(status, &body)
                    .with_header("WWW-Authenticate", "Basic realm=\"s3cr3t-URL-8f2a\"")
            }),
        )
        .unwrap();
        Echo { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The URL with `user:pass@` in it.
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.server.addr())
    }
}

/// A loopback port nothing listens on (connections are refused).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The environment and flags of one "everything fails" configuration.
pub struct Setup {
    pub name: &'static str,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    _servers: Vec<Echo>,
    _tmp: tempfile::TempDir,
}

/// Three configurations covering every way a credential reaches a handler.
pub fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    // 1: credentials in URLs (Marathon, Consul, webhook), Consul token in env; 401/403/500 echo.
    {
        let m = Echo::start(&[401, 403]);
        let c = Echo::start(&[403, 503]);
        let h = Echo::start(&[500]);
        let tmp = tempfile::tempdir().unwrap();
        out.push(Setup {
            name: "urls-and-env-token",
            env: vec![
                ("MARATHON_URL".into(), m.url_with("deploy", URL_PASS)),
                ("CHRONOS_URL".into(), m.url_with("deploy", URL_PASS)),
                ("CONSUL_HTTP_ADDR".into(), c.url_with("u", URL_PASS)),
                ("CONSUL_HTTP_TOKEN".into(), CONSUL_TOKEN.into()),
            ],
            args: vec!["--notify".into(), h.url_with("hook", HOOK_PASS) + "/hook"],
            _servers: vec![m, c, h],
            _tmp: tmp,
        });
    }
    // 2: basic auth from env, Consul token from a file, a webhook whose path is the secret (env);
    // 500/502/503/404 echo.
    {
        let m = Echo::start(&[500, 502]);
        let c = Echo::start(&[403, 502, 503]);
        let h = Echo::start(&[404]);
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("consul.token");
        std::fs::write(&file, format!("{CONSUL_FILE_TOKEN}\n")).unwrap();
        out.push(Setup {
            name: "env-basic-auth-and-token-file",
            env: vec![
                ("MARATHON_URL".into(), m.url()),
                ("MARATHON_USERNAME".into(), "deploy".into()),
                ("MARATHON_PASSWORD".into(), MARATHON_PASS.into()),
                ("CHRONOS_URL".into(), m.url()),
                ("CHRONOS_USERNAME".into(), "deploy".into()),
                ("CHRONOS_PASSWORD".into(), MARATHON_PASS.into()),
                ("CONSUL_HTTP_ADDR".into(), c.url()),
                ("CONSUL_HTTP_TOKEN_FILE".into(), file.display().to_string()),
                (
                    "SHIPWATCH_NOTIFY".into(),
                    format!("{}/services/T000/B000/{HOOK_PATH}", h.url()),
                ),
            ],
            args: vec![],
            _servers: vec![m, c, h],
            _tmp: tmp,
        });
    }
    // 3: a DC/OS token, credentials in URLs of ports that refuse connections.
    {
        let tmp = tempfile::tempdir().unwrap();
        let dead = |p: u16| format!("http://deploy:{URL_PASS}@127.0.0.1:{p}");
        out.push(Setup {
            name: "token-and-refused-connections",
            env: vec![
                ("MARATHON_URL".into(), dead(closed_port())),
                ("MARATHON_TOKEN".into(), MARATHON_TOKEN.into()),
                ("CHRONOS_URL".into(), dead(closed_port())),
                ("CONSUL_HTTP_ADDR".into(), dead(closed_port())),
                ("CONSUL_HTTP_TOKEN".into(), CONSUL_TOKEN.into()),
            ],
            args: vec![
                "--notify".into(),
                format!("http://hook:{HOOK_PASS}@127.0.0.1:{}/hook", closed_port()),
            ],
            _servers: vec![],
            _tmp: tmp,
        });
    }
    out
}

fn apply(inv: Invocation, setup: &Setup) -> Invocation {
    let mut inv = inv.env("RUST_LOG", "debug").args(setup.args.iter());
    for (k, v) in &setup.env {
        inv = inv.env(k, v.clone());
    }
    inv
}

fn leak_free(out: &Outcome) -> Result<(), String> {
    out.sane()?;
    out.no_secrets(&all_secrets())?;
    ensure!(
        out.code != Some(0),
        "every remote failed, yet exit 0\n{}",
        out.show()
    );
    Ok(())
}

/// A handler that talks HTTP only (kv2jobs, tasks2consul): every setup, with `payload`.
pub fn http_handler(r: &Report, handler: &'static str, payload: &[u8], extra: &[&str]) {
    for setup in setups() {
        r.case(&format!("secrets/{handler}/{}", setup.name), || {
            let home = tempfile::tempdir().unwrap();
            let inv = Invocation::new(handler, home.path())
                .args(extra.iter().copied())
                .args(["--timeout", "15s"])
                .stdin(payload.to_vec());
            r.faults(1);
            leak_free(&apply(inv, &setup).run())
        });
        r.case(
            &format!("secrets/{handler}/{}-output-text", setup.name),
            || {
                let home = tempfile::tempdir().unwrap();
                let inv = Invocation::new(handler, home.path())
                    .args(extra.iter().copied())
                    .args(["--timeout", "15s", "--output", "text"])
                    .stdin(payload.to_vec());
                r.faults(1);
                let out = apply(inv, &setup).run();
                ensure!(
                    !out.hung && out.code.is_some_and(|c| c != 0 && c != 101),
                    "want a non-zero exit without panic\n{}",
                    out.show()
                );
                out.no_secrets(&all_secrets())
            },
        );
        r.case(
            &format!("secrets/{handler}/{}-with-lock", setup.name),
            || {
                let home = tempfile::tempdir().unwrap();
                let inv = Invocation::new(handler, home.path())
                    .args(extra.iter().copied())
                    .args(["--timeout", "15s", "--lock", "shipwatch/lock"])
                    .stdin(payload.to_vec());
                r.faults(1);
                leak_free(&apply(inv, &setup).run())
            },
        );
    }
}

pub fn tag2git(r: &Report) {
    // The git remote itself carries credentials and answers 401/500 with an echo.
    let remotes: [(&str, &'static [u16]); 2] =
        [("git-remote-401", &[401]), ("git-remote-500", &[500])];
    for (name, statuses) in remotes {
        r.case(&format!("secrets/tag2git/{name}"), || {
            let git = Echo::start(statuses);
            let home = tempfile::tempdir().unwrap();
            let out = Invocation::new("tag2git", home.path())
                .arg("--repo")
                .arg(format!("{}/ops/jobs.git", git.url_with("ci", GIT_PASS)))
                .args(["--push-attempts", "2", "--timeout", "20s"])
                .arg("--workdir")
                .arg(home.path().join("wd"))
                .stdin(payload(&[kv(API_KEY, b"1.4.2", 5)]))
                .run();
            r.faults(1);
            leak_free(&out)
        });
    }
    // A working repository, with --lock and --notify against failing, echoing servers.
    for setup in setups() {
        r.case(&format!("secrets/tag2git/{}", setup.name), || {
            let repo = Repo::new();
            let inv = repo
                .tag2git(payload(&[kv(API_KEY, b"1.4.2", 5)]))
                .args(["--lock", "shipwatch/tag2git"]);
            r.faults(1);
            leak_free(&apply(inv, &setup).run())?;
            history_clean(&repo)
        });
    }
    // A run that commits while secrets sit in its environment and its webhook fails.
    r.case("secrets/tag2git/commit-with-secrets-in-env", || {
        let repo = Repo::new();
        let hook = Echo::start(&[403]);
        let mut inv = repo
            .tag2git(payload(&[kv(API_KEY, b"1.4.3", 6)]))
            .arg("--notify")
            .arg(hook.url_with("hook", HOOK_PASS) + "/hook");
        for (k, v) in [
            ("CONSUL_HTTP_TOKEN", CONSUL_TOKEN),
            ("MARATHON_PASSWORD", MARATHON_PASS),
            ("MARATHON_TOKEN", MARATHON_TOKEN),
        ] {
            inv = inv.env(k, v);
        }
        let before = repo.commit_count();
        let out = inv.run();
        r.faults(1);
        out.sane()?;
        out.no_secrets(&all_secrets())?;
        ensure!(
            repo.commit_count() == before + 1,
            "want one commit\n{}",
            out.show()
        );
        history_clean(&repo)
    });
}

fn history_clean(repo: &Repo) -> Result<(), String> {
    let history = repo.full_history();
    for s in plain_secrets() {
        ensure!(!history.contains(&s), "SECRET {s:?} LEAKED into a commit");
    }
    Ok(())
}
