//! The docs and the shipped watch configs name only flags and environment variables that the
//! binaries accept (issue 12 item 9: the kv2jobs README documented `KV2JOBS_NOTIFY` while the
//! binary reads `SHIPWATCH_NOTIFY`; the configs called bare names the agent's PATH lacks).
//!
//! What the binaries accept is read from the binaries themselves (each one's `--help`, which clap
//! builds from the same definitions that parse the flags), so the check follows every new flag
//! without an edit here. Variables read outside clap (`std::env::var("CONSUL_CAPATH")`, and names
//! composed as `format!("{prefix}_CACERT")` for Consul, Marathon and Chronos) are collected from
//! the string literals of the crates' and handlers' sources ([`names_in_sources`]): a variable the
//! code reads is accepted without an edit here, and one that no source names (`KV2JOBS_NOTIFY`) is
//! not.
//!
//! Needs the handler binaries built (`cargo test --workspace` builds them, or SHIPWATCH_BIN_DIR).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const HANDLERS: [&str; 3] = ["tag2git", "kv2jobs", "tasks2consul"];

/// Prefixes of the environment variables that belong to shipwatch's world: a name with one of
/// them in the docs must be one the binaries read.
const ENV_PREFIXES: &[&str] = &[
    "CONSUL_",
    "MARATHON_",
    "CHRONOS_",
    "SHIPWATCH_",
    "TAG2GIT_",
    "KV2JOBS_",
    "TASKS2CONSUL_",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin(name: &str) -> PathBuf {
    devstack::bins::handler_dir()
        .unwrap_or_else(|e| panic!("{e}"))
        .join(name)
}

/// What one binary accepts, from its `--help`.
#[derive(Debug, Default, Clone)]
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn help(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} --help",
        program.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Long flags of the option lines (`  -h, --help`, `      --lock <KEY>  …`) and `[env: NAME…]`.
fn parse_help(text: &str) -> Accepts {
    let mut a = Accepts::default();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            for tok in t.split([' ', ',']).filter(|w| !w.is_empty()) {
                if let Some(f) = long_flag(tok) {
                    a.flags.insert(f);
                } else if !tok.starts_with(['-', '<', '[']) {
                    break; // the description starts
                }
            }
        }
        let mut rest = line;
        while let Some(i) = rest.find("[env: ") {
            rest = &rest[i + 6..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            a.env.insert(name);
        }
    }
    a
}

/// `--name` (letters, digits, dashes) at the start of `tok`, without what follows (`=`, `<`).
/// A `--snake_case` name is another program's (Marathon's `--max_running_deployments`): clap
/// derives kebab-case names, so none of ours has an underscore.
fn long_flag(tok: &str) -> Option<String> {
    let rest = tok.strip_prefix("--")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    (name.starts_with(|c: char| c.is_ascii_lowercase()) && !name.contains('_'))
        .then(|| format!("--{name}"))
}

fn accepted() -> BTreeMap<String, Accepts> {
    let mut out = BTreeMap::new();
    for h in HANDLERS {
        out.insert(h.to_string(), parse_help(&help(&bin(h), &[])));
    }
    // The devstack is documented in the root README too (`demo --keep`, `up --config`).
    let devstack = bin("devstack");
    if devstack.is_file() {
        let mut d = parse_help(&help(&devstack, &[]));
        for sub in ["demo", "up"] {
            let s = parse_help(&help(&devstack, &[sub]));
            d.flags.extend(s.flags);
            d.env.extend(s.env);
        }
        out.insert("devstack".into(), d);
    }
    out
}

/// Every `--flag` in `text` that starts a word (not `---`, not inside a longer token).
fn flags_in(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("--") {
        let at = i + pos;
        let starts_word = at == 0
            || matches!(
                bytes[at - 1],
                b' ' | b'\t' | b'[' | b'(' | b'`' | b'"' | b'|' | b'\'' | b'{'
            );
        if starts_word {
            if let Some(f) = long_flag(&text[at..]) {
                out.push(f);
            }
        }
        i = at + 2;
    }
    out
}

/// Every name with a shipwatch prefix in `text`.
fn env_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if word(chars[i]) && (i == 0 || !word(chars[i - 1])) {
            let w: String = chars[i..].iter().take_while(|c| word(**c)).collect();
            i += w.chars().count();
            let upper = w
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if upper
                && ENV_PREFIXES
                    .iter()
                    .any(|p| w.starts_with(p) && w.len() > p.len())
            {
                out.push(w);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Who a piece of a document is about: one handler, or any shipwatch binary.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    One(String),
    Any,
}

/// One command of a shell line: split at pipes and `;`/`&&`/`||`.
fn commands(line: &str) -> Vec<&str> {
    line.split(['|', ';'])
        .map(|s| s.trim_start_matches('&'))
        .collect()
}

/// The program of a command (`A=1 /usr/local/bin/kv2jobs …` → `kv2jobs`), `None` when the
/// command starts with a flag or a `[` (a synopsis continuation line, a flag in prose).
fn program(cmd: &str) -> Option<String> {
    // Skip `VAR=value` assignments and `sudo`/`env` in front of the program.
    let assignment = |w: &str| w.contains('=') && !w.starts_with('-');
    let first = cmd
        .split_whitespace()
        .find(|w| !assignment(w) && !matches!(*w, "sudo" | "env"))?;
    if first.starts_with('-') || first.starts_with('[') {
        return None;
    }
    Some(first.rsplit('/').next().unwrap_or(first).to_string())
}

/// A problem found in a document.
fn check_command(
    doc: &str,
    cmd: &str,
    section: &Owner,
    accepts: &BTreeMap<String, Accepts>,
    problems: &mut Vec<String>,
) {
    let owner = match program(cmd) {
        Some(p) if accepts.contains_key(&p) => Owner::One(p),
        Some(_) => return, // git, curl, consul, cargo, jq …: not ours to check
        None => section.clone(),
    };
    for f in flags_in(cmd) {
        let ok = match &owner {
            Owner::One(h) => accepts[h].flags.contains(&f),
            Owner::Any => accepts.values().any(|a| a.flags.contains(&f)),
        };
        if !ok {
            problems.push(format!(
                "{doc}: {f} is not a flag of {} (in {:?})",
                match &owner {
                    Owner::One(h) => h.as_str(),
                    Owner::Any => "any shipwatch binary",
                },
                cmd.trim()
            ));
        }
    }
}

/// Checks one Markdown document. `default` owns everything outside handler-named sections.
fn check_markdown(
    doc: &str,
    text: &str,
    default: Owner,
    accepts: &BTreeMap<String, Accepts>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut section = default.clone();
    let mut in_code = false;
    let mut code_lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            if in_code {
                // Shell continuation: `\` at the end, or a line starting with a flag or `[`.
                let mut joined: Vec<String> = Vec::new();
                for l in code_lines.drain(..) {
                    let t = l.trim_start();
                    let continues = joined.last().is_some_and(|p: &String| p.ends_with('\\'))
                        || ((t.starts_with('-') || t.starts_with('[')) && !joined.is_empty());
                    if continues {
                        let last = joined.last_mut().unwrap();
                        *last = format!("{} {t}", last.trim_end_matches('\\'));
                    } else {
                        joined.push(l.clone());
                    }
                }
                for l in joined {
                    // Comments are prose about the command, not part of it.
                    let code = l.split(" #").next().unwrap_or(&l);
                    for cmd in commands(code) {
                        check_command(doc, cmd, &section, accepts, &mut problems);
                    }
                }
            }
            in_code = !in_code;
            continue;
        }
        if in_code {
            code_lines.push(line.to_string());
            continue;
        }
        if line.starts_with('#') {
            let named: Vec<&str> = HANDLERS
                .iter()
                .copied()
                .filter(|h| line.split(|c: char| !c.is_alphanumeric()).any(|w| w == *h))
                .collect();
            section = match (line.starts_with("# "), named.as_slice()) {
                (false, [one]) => Owner::One(one.to_string()),
                _ => default.clone(),
            };
        }
        // Inline code spans are commands or flags; the text around them is prose.
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 {
                for cmd in commands(part) {
                    check_command(doc, cmd, &section, accepts, &mut problems);
                }
            } else if !flags_in(part).is_empty() {
                check_command(doc, &format!(" {part}"), &section, accepts, &mut problems);
            }
        }
    }
    problems.extend(check_env(doc, text, &default, accepts));
    problems
}

/// Names with a shipwatch prefix must be read by the binaries (of the document's handler, or any).
fn check_env(
    doc: &str,
    text: &str,
    owner: &Owner,
    accepts: &BTreeMap<String, Accepts>,
) -> Vec<String> {
    let in_sources = names_in_sources();
    let mut problems = Vec::new();
    for name in env_in(text).into_iter().collect::<BTreeSet<_>>() {
        let by_clap = match owner {
            Owner::One(h) => accepts[h].env.contains(&name),
            Owner::Any => accepts.values().any(|a| a.env.contains(&name)),
        };
        if !(by_clap || in_sources.contains(&name)) {
            problems.push(format!(
                "{doc}: {name} is not an environment variable the binaries read"
            ));
        }
    }
    problems
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn readmes_name_only_flags_and_variables_the_binaries_accept() {
    let accepts = accepted();
    let root = repo_root();
    let mut docs = vec![
        (root.join("README.md"), Owner::Any),
        (root.join("consul-config/README.md"), Owner::Any),
    ];
    for h in HANDLERS {
        docs.push((
            root.join(format!("handlers/{h}/README.md")),
            Owner::One(h.to_string()),
        ));
    }
    let mut problems = Vec::new();
    for (path, owner) in &docs {
        let doc = path.strip_prefix(&root).unwrap().display().to_string();
        problems.extend(check_markdown(&doc, &read(path), owner.clone(), &accepts));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_shipped_watch_configs_run_installed_binaries_with_flags_they_accept() {
    let accepts = accepted();
    let dir = repo_root().join("consul-config");
    let mut problems = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text = read(&path);
        let config: Value = match ext {
            "json" => serde_json::from_str(&text).unwrap(),
            "hcl" => hcl::from_str(&text).unwrap(),
            _ => continue,
        };
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for w in config["watches"].as_array().unwrap() {
            seen += 1;
            if w.get("token").is_some() {
                problems.push(format!(
                    "{file}: an active token (a placeholder makes the watch fail under ACLs; see README)"
                ));
            }
            let args: Vec<&str> = w["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let Some(handler) = HANDLERS
                .iter()
                .find(|h| args[0] == format!("{}/{h}", devstack::bins::INSTALL_DIR))
            else {
                problems.push(format!(
                    "{file}: args[0] {:?} is not /usr/local/bin/<handler> (the agent's PATH may lack a bare name)",
                    args[0]
                ));
                continue;
            };
            for f in args.iter().filter_map(|a| long_flag(a)) {
                if !accepts[*handler].flags.contains(&f) {
                    problems.push(format!("{file}: {f} is not a flag of {handler}"));
                }
            }
            // The binary parses exactly these arguments (values included): clap stops at the
            // trailing --help only when everything before it parsed.
            let out = Command::new(bin(handler))
                .args(&args[1..])
                .arg("--help")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if !out.status.success() {
                problems.push(format!(
                    "{file}: {handler} refuses its args: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            problems.extend(check_env(
                &file,
                &text,
                &Owner::One(handler.to_string()),
                &accepts,
            ));
        }
    }
    assert!(seen >= 6, "found {seen} watches in JSON and HCL");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Names with a shipwatch prefix that the sources of the crates and handlers spell as string
/// literals (`"CONSUL_CAPATH"`), plus those composed per service from a `"{prefix}_SUFFIX"`
/// literal (`CONSUL_`, `MARATHON_`, `CHRONOS_` + `_CACERT`, …). Test directories are left out.
fn names_in_sources() -> BTreeSet<String> {
    let root = repo_root();
    let mut names = BTreeSet::new();
    let mut suffixes = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = ["crates", "handlers"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target" && n != "tests") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                for literal in read(&p).split('"').skip(1).step_by(2) {
                    if let Some(suffix) = literal.strip_prefix("{prefix}") {
                        suffixes.insert(suffix.to_string());
                    } else if env_in(literal) == [literal] {
                        names.insert(literal.to_string());
                    }
                }
            }
        }
    }
    for service in ["CONSUL", "MARATHON", "CHRONOS"] {
        for suffix in &suffixes {
            names.insert(format!("{service}{suffix}"));
        }
    }
    names.extend(names_read_by_scripts(&root));
    names
}

/// Variables that the project's scripts and units expand (`$NAME`, `${NAME…}`): the Consul build
/// script's `SHIPWATCH_CACHE`, the systemd unit's `TASKS2CONSUL_FOLLOW_ARGS`. Documenting them
/// is right even though no binary reads them.
fn names_read_by_scripts(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = ["tools", "packaging", ".ci"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            for piece in text.split('$').skip(1) {
                let piece = piece.trim_start_matches('{');
                if let Some(name) = env_in(piece).into_iter().next() {
                    if piece.starts_with(&name) {
                        names.insert(name);
                    }
                }
            }
        }
    }
    names
}

#[test]
fn the_variables_the_code_reads_are_found_in_the_sources() {
    let names = names_in_sources();
    for name in [
        "CONSUL_INDEX",
        "CONSUL_HTTP_TOKEN_FILE",
        "MARATHON_USERNAME",
        "CHRONOS_CACERT",
    ] {
        assert!(names.contains(name), "{name} not found: {names:?}");
    }
    assert!(!names.contains("KV2JOBS_NOTIFY"), "{names:?}");
}

/// The checker itself: it finds the drift it exists for.
#[test]
fn the_checker_finds_unknown_flags_and_variables() {
    let mut accepts = BTreeMap::new();
    accepts.insert(
        "kv2jobs".to_string(),
        parse_help(
            "Options:\n      --notify <URL>  Post [env: SHIPWATCH_NOTIFY]\n      --prune  Delete\n  -h, --help  Print help\n",
        ),
    );
    assert!(accepts["kv2jobs"].flags.contains("--help"));
    let doc = "# kv2jobs\n\n| `--notify URL` | `KV2JOBS_NOTIFY` |\n\n```sh\ncurl -s x | kv2jobs --prune \\\n   --bogus\ngit log --grep=x\n```\nprose `--nope` and `git commit -S`\n";
    let problems = check_markdown("t.md", doc, Owner::One("kv2jobs".into()), &accepts);
    let text = format!("{problems:?}");
    assert!(text.contains("--bogus"), "{text}");
    assert!(text.contains("--nope"), "{text}");
    assert!(text.contains("KV2JOBS_NOTIFY"), "{text}");
    assert!(
        !text.contains("--grep") && !text.contains("--notify"),
        "{text}"
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
}
