//! `devstack demo`: one release walked through the whole pipeline, each step printed as it
//! happens and checked; exits non-zero naming the first step that did not do what it should.

use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::pipeline::{fail, wait_until, Pipeline, PipelineError, PipelineOptions, API_IMAGE_KEY};
use crate::sinks::{SmtpSink, WebhookSink};
use crate::stack::StackOptions;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct DemoOptions {
    pub bin_dir: PathBuf,
    pub config_dir: PathBuf,
    /// Leave the stack running after the walk-through (until Ctrl-C).
    pub keep: bool,
    /// A real Consul binary: the demo runs on `consul agent -dev` instead of the double.
    pub consul_bin: Option<PathBuf>,
}

fn heading(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until a run of `handler` that finished after the `seen` earlier ones printed `expect`
/// and `done` holds, printing each finished run's summary as it appears.
fn follow(
    p: &Pipeline,
    handler: &str,
    seen: &mut usize,
    step: &str,
    expect: &str,
    mut done: impl FnMut(&Pipeline) -> bool,
) -> Result<(), PipelineError> {
    let mut matched = false;
    wait_until(step, STEP_TIMEOUT, || {
        let inv = p.invocations(handler);
        for i in inv.iter().skip(*seen) {
            println!(
                "   {handler} ran (CONSUL_INDEX {}, exit {}):",
                i.consul_index,
                i.exit_code.unwrap_or(-1)
            );
            println!("{}", indent(i.stdout.trim_end()));
            matched |= i.stdout.contains(expect);
        }
        *seen = inv.len();
        matched && done(p)
    })
}

/// The team's inboxes: an SMTP sink and a chat webhook sink, and the `--notify-config` that
/// routes the demo's apps (`/sami`) and its Chronos job (owner `sami@example.com`) to them.
struct Inboxes {
    smtp: SmtpSink,
    chat: WebhookSink,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Inboxes {
    fn start() -> Result<Inboxes, PipelineError> {
        let step = "start the team's mail and chat sinks";
        let smtp = SmtpSink::start().map_err(|e| fail(step, e))?;
        let chat = WebhookSink::start().map_err(|e| fail(step, e))?;
        let dir = tempfile::tempdir().map_err(|e| fail(step, e))?;
        let config = dir.path().join("notify.json");
        let doc = serde_json::json!({
            "channels": {
                "sami-chat": {"type": "slack", "url": {"value": format!("{}/sami-room", chat.url())}},
                "sami-mail": {"type": "email", "to": ["sami-team@example.com"]}
            },
            "smtp": {"host": smtp.host(), "port": smtp.port(), "tls": "none",
                     "from": "shipwatch <shipwatch@example.com>"},
            "routes": [
                {"name": "sami", "prefix": "/sami", "channels": ["sami-chat", "sami-mail"]},
                {"name": "sami jobs", "owner": "sami@example.com", "channels": ["sami-mail"]}
            ]
        });
        std::fs::write(&config, doc.to_string()).map_err(|e| fail(step, e))?;
        Ok(Inboxes {
            smtp,
            chat,
            _dir: dir,
            config,
        })
    }

    /// Waits for the team's email and chat message about `needle` received after `since`
    /// (mails, chat messages) and prints them.
    fn show(&self, step: &str, since: (usize, usize), needle: &str) -> Result<(), PipelineError> {
        let mut found = None;
        let waited = wait_until(step, STEP_TIMEOUT, || {
            let mail = self
                .smtp
                .mails()
                .into_iter()
                .skip(since.0)
                .find(|m| m.to == ["sami-team@example.com"] && m.body().contains(needle));
            let chat = self.chat.hooks().into_iter().skip(since.1).find(|h| {
                h.json()["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
            });
            match (mail, chat) {
                (Some(m), Some(c)) => {
                    found = Some((m, c));
                    true
                }
                _ => false,
            }
        });
        let (Ok(()), Some((mail, chat))) = (waited, found) else {
            return Err(fail(
                step,
                format!(
                    "no email to sami-team@example.com and chat message about {needle:?} within \
                     {STEP_TIMEOUT:?} (kv2jobs --notify-config)"
                ),
            ));
        };
        println!("   email to {}:", mail.to.join(", "));
        println!(
            "     Subject: {}",
            mail.header("Subject").unwrap_or_default()
        );
        println!("{}", indent(&indent(mail.body().trim_end())));
        println!("   chat message in {}:", chat.path);
        println!(
            "{}",
            indent(&indent(chat.json()["text"].as_str().unwrap_or_default()))
        );
        Ok(())
    }

    fn seen(&self) -> (usize, usize) {
        (self.smtp.mails().len(), self.chat.hooks().len())
    }
}

/// Runs the demo. Everything it starts is stopped when it returns.
pub fn run(opts: DemoOptions) -> Result<(), PipelineError> {
    println!("shipwatch demo: CI -> tag2git -> Git -> git2consul -> kv2jobs -> Marathon/Chronos -> tasks2consul -> Consul");
    let inboxes = Inboxes::start()?;
    let p = Pipeline::start(PipelineOptions {
        stack: StackOptions {
            deploy_duration: Duration::from_millis(800),
            port_base: None,
            consul_bin: opts.consul_bin.clone(),
            agent_env: Vec::new(),
        },
        bin_dir: opts.bin_dir.clone(),
        config_dir: opts.config_dir,
        env: vec![("RUST_LOG".into(), "warn".into())],
        extra_args: vec![(
            "kv2jobs".into(),
            vec![
                "--notify-config".into(),
                inboxes.config.display().to_string(),
            ],
        )],
    })?;
    println!(
        "devstack: Consul {}{}  Marathon {}  Chronos {}",
        p.stack.consul.url(),
        match &opts.consul_bin {
            Some(b) => format!(" (real agent {})", b.display()),
            None => " (double)".to_string(),
        },
        p.stack.marathon.url(),
        p.stack.chronos.url()
    );
    println!("jobs repository: {} (branch main)", p.bare.display());

    heading(
        0,
        "agent start: the watches fire with the current data; the jobs are deployed and registered",
    );
    let (mut seen_tag, mut seen_kv, mut seen_t2c) = (0usize, 0usize, 0usize);
    follow(
        &p,
        "kv2jobs",
        &mut seen_kv,
        "initial deploy",
        "create-app",
        |p| p.marathon_image("/sami/api").is_some() && p.marathon_image("/sami/web").is_some(),
    )?;
    follow(
        &p,
        "tasks2consul",
        &mut seen_t2c,
        "initial registration",
        "register",
        |p| {
            let tasks = p.marathon_tasks("/sami/api");
            !tasks.is_empty() && p.consul_task_ids("/sami/api") == sorted(tasks)
        },
    )?;
    follow(
        &p,
        "tag2git",
        &mut seen_tag,
        "tag2git at start",
        "tag2git",
        |_| true,
    )?;
    let old_tasks = sorted(p.marathon_tasks("/sami/api"));
    let web_version = app_version(&p, "/sami/web");

    let before_release = inboxes.seen();

    heading(
        1,
        "CI pushed registry.local:5000/sami/api:1.4.2 and writes the tag into Consul KV",
    );
    println!("   PUT {API_IMAGE_KEY} = 1.4.2");
    p.ci_publish(API_IMAGE_KEY, "1.4.2");

    heading(
        2,
        "tag2git commits the new image into the job files and pushes",
    );
    follow(
        &p,
        "tag2git",
        &mut seen_tag,
        "2. tag2git",
        "update-image",
        |p| {
            p.git_bare(&["log", "-1", "--format=%s"])
                .is_ok_and(|s| s.contains("1.4.2"))
        },
    )?;
    let commit = p.git_bare(&["log", "-1", "--format=%H%n%an <%ae>%n%n%B"])?;
    println!("   commit:\n{}", indent(commit.trim_end()));
    let diff = p.git_bare(&["diff", "HEAD~1", "HEAD", "--unified=0"])?;
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    println!(
        "   diff (only the image lines):\n{}",
        indent(&changed.join("\n"))
    );
    if changed.len() != 4
        || !changed
            .iter()
            .all(|l| l.contains("registry.local:5000/sami/api:1.4."))
    {
        return Err(fail(
            "2. tag2git",
            format!("expected exactly the two image lines to change, got {changed:?}"),
        ));
    }

    heading(
        3,
        "git2consul mirrors the commit into KV (files first, then jobs/main.ref)",
    );
    let report = p.git2consul()?;
    for k in &report.written {
        println!("   PUT {k}");
    }
    println!("   PUT jobs/main.ref = {}", report.commit);
    if report.written.len() != 2 {
        return Err(fail(
            "3. git2consul",
            format!("expected the two changed files, wrote {:?}", report.written),
        ));
    }

    heading(
        4,
        "kv2jobs deploys the changed app and job (only those) and fires shipwatch-deployed",
    );
    let step_start = seen_kv;
    follow(
        &p,
        "kv2jobs",
        &mut seen_kv,
        "4. kv2jobs",
        "update-app",
        |p| p.marathon_image("/sami/api").as_deref() == Some("registry.local:5000/sami/api:1.4.2"),
    )?;
    // The run that deployed: kv2jobs may have been started mid-sync (it waits for the .ref and
    // deploys), and the watch runs it again after the .ref write (nothing left to do).
    let last = p
        .invocations("kv2jobs")
        .into_iter()
        .skip(step_start)
        .rfind(|i| {
            i.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("applied"))
        })
        .map(|i| i.stdout)
        .unwrap_or_default();
    let writes: Vec<&str> = last
        .lines()
        .filter(|l| l.trim_start().starts_with("applied"))
        .collect();
    if writes.len() != 2 || !last.contains("/sami/api") || !last.contains("update-job") {
        return Err(fail(
            "4. kv2jobs",
            format!("expected exactly /sami/api and api-cleanup to be updated, got {writes:?}"),
        ));
    }
    if app_version(&p, "/sami/web") != web_version {
        return Err(fail(
            "4. kv2jobs",
            "/sami/web was redeployed although its config did not change",
        ));
    }

    heading(
        5,
        "the sami team is told: email and chat message about its release",
    );
    inboxes.show(
        "5. team notification",
        before_release,
        "update-app /sami/api",
    )?;

    heading(
        6,
        "tasks2consul registers the new tasks and deregisters the old ones",
    );
    follow(
        &p,
        "tasks2consul",
        &mut seen_t2c,
        "6. tasks2consul",
        "deregister",
        |p| {
            let tasks = sorted(p.marathon_tasks("/sami/api"));
            !tasks.is_empty() && tasks != old_tasks && p.consul_task_ids("/sami/api") == tasks
        },
    )?;

    registrar_follows_a_scale_down(&p, &opts.bin_dir)?;

    heading(8, "final state");
    println!(
        "   git log (the audit trail):\n{}",
        indent(p.git_bare(&["log", "--format=%h %s"])?.trim_end())
    );
    println!(
        "   marathon /sami/api: image {} version {}",
        p.marathon_image("/sami/api").unwrap_or_default(),
        app_version(&p, "/sami/api")
    );
    println!("   consul services for /sami/api:");
    for t in p.consul_task_ids("/sami/api") {
        println!("     task {t}");
    }
    println!("\nall steps did what they should.");
    if opts.keep {
        println!(
            "--keep: the stack stays up (Consul {}, Marathon {}, Chronos {}); Ctrl-C to stop.",
            p.stack.consul.url(),
            p.stack.marathon.url(),
            p.stack.chronos.url()
        );
        crate::stack::wait_for_stop_signal();
    }
    Ok(())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn app_version(p: &Pipeline, id: &str) -> String {
    p.stack
        .marathon
        .app(id)
        .and_then(|a| {
            a.get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Step 6: `tasks2consul --follow` (the registrar, as tasks2consul-follow.service runs it) on
/// Marathon's event stream; an operator scales /sami/web to 0 through Marathon's API, which
/// fires no Consul watch, and the registrar deregisters its tasks from the stream alone.
fn registrar_follows_a_scale_down(
    p: &Pipeline,
    bin_dir: &std::path::Path,
) -> Result<(), PipelineError> {
    const STEP: &str = "7. tasks2consul --follow";
    heading(
        7,
        "an operator scales /sami/web to 0 in Marathon; tasks2consul --follow deregisters it",
    );
    let mut cmd = std::process::Command::new(bin_dir.join("tasks2consul"));
    cmd.args(["--follow", "--resync-interval", "5m"])
        .envs(p.stack.env())
        .env("RUST_LOG", "info");
    let mut registrar = Daemon::spawn(&mut cmd).map_err(|e| fail(STEP, e))?;
    wait_until(STEP, STEP_TIMEOUT, || {
        registrar.lines_with("full sync (start)") == 1
    })?;
    let url = format!("{}/v2/apps/sami/web?force=true", p.stack.marathon.url());
    println!("   PUT /v2/apps/sami/web {{\"instances\": 0}}");
    ureq::put(&url)
        .send_json(serde_json::json!({"instances": 0}))
        .map_err(|e| fail(STEP, format!("scaling /sami/web: {e}")))?;
    let started = std::time::Instant::now();
    wait_until(STEP, STEP_TIMEOUT, || {
        p.marathon_tasks("/sami/web").is_empty() && p.consul_task_ids("/sami/web").is_empty()
    })?;
    let took = started.elapsed();
    let code = registrar
        .terminate(STEP_TIMEOUT)
        .map_err(|e| fail(STEP, e))?;
    let shown = ["event stream connected", "full sync (", "] deregister "];
    for line in registrar.log().lines() {
        if shown.iter().any(|s| line.contains(s)) {
            println!("   {line}");
        }
    }
    println!(
        "   Consul lists no /sami/web task {took:?} after the scale-down; SIGTERM: exit {}",
        code.unwrap_or(-1)
    );
    if code != Some(0) {
        return Err(fail(
            STEP,
            format!("exit {code:?} after SIGTERM, expected 0"),
        ));
    }
    Ok(())
}
