//! Commit messages: a subject naming the change, a body listing every job, and machine-readable
//! trailers (`Consul-Key`, `Consul-Modify-Index`, `Consul-Value`, `Consul-Index`, one set per applied
//! entry) that the replay check reads back from history.
//!
//! `--message-template` replaces subject and body; placeholders are `{subject}`, `{body}`,
//! `{repository}`, `{old}`, `{new}`, `{keys}`, `{count}`, `{images}`, `{consul_index}`, and `{{`/`}}`
//! for literal braces. The trailers are always appended after the template's text.

use std::collections::BTreeSet;

use crate::entries::Update;
use crate::scan::Site;

/// Trailer keys (git matches them case-insensitively).
pub const TRAILER_KEY: &str = "Consul-Key";
/// See [`TRAILER_KEY`].
pub const TRAILER_MODIFY_INDEX: &str = "Consul-Modify-Index";
/// The applied value, normalized ([`Update::reference`]): with the key and ModifyIndex it identifies
/// one write even across a Consul snapshot restore, where ModifyIndex values start over.
pub const TRAILER_VALUE: &str = "Consul-Value";
/// See [`TRAILER_KEY`].
pub const TRAILER_CONSUL_INDEX: &str = "Consul-Index";

const PLACEHOLDERS: &[&str] = &[
    "subject",
    "body",
    "repository",
    "old",
    "new",
    "keys",
    "count",
    "images",
    "consul_index",
];

/// Checks a template: every `{name}` must be a known placeholder.
pub fn validate_template(template: &str) -> Result<(), String> {
    render(template, &|name| {
        PLACEHOLDERS.contains(&name).then(String::new)
    })
    .map(drop)
}

/// Renders `{name}` placeholders with `lookup`; `{{` and `}}` are literal braces.
fn render(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if tail.starts_with('}') {
            return Err(
                "unmatched '}' in --message-template (write '}}' for a literal brace)".into(),
            );
        } else {
            let end = tail
                .find('}')
                .ok_or("unclosed '{' in --message-template (write '{{' for a literal brace)")?;
            let name = &tail[1..end];
            let value = lookup(name).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{name}}} in --message-template (known: {})",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Text from job files (ids, paths) on one line: a newline in an app id must not be able to start
/// a paragraph that git would read as trailers.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Short repository name for subjects: the familiar name on Docker Hub, the path elsewhere.
fn short_repo(update: &Update) -> String {
    match update.image() {
        Some(image) if image.domain() == gitops::imageref::DEFAULT_DOMAIN => {
            image.familiar_repository()
        }
        Some(image) => image.path().to_string(),
        None => update.repository().to_string(),
    }
}

/// Short tag/digest for subjects (`1.4.2`, `@sha256:0123456789ab`).
fn short_version(update: &Update) -> String {
    update.image().map_or_else(
        || update.tag().unwrap_or_default().to_string(),
        |image| image.short_version(),
    )
}

/// Builds the full commit message for `changes` (sites that change) made for `updates`.
pub fn build(
    updates: &[Update],
    changes: &[&Site],
    consul_index: Option<u64>,
    template: Option<&str>,
) -> Result<String, String> {
    let applied: BTreeSet<usize> = changes.iter().map(|s| s.update).collect();
    let olds: BTreeSet<String> = changes.iter().map(|s| s.old_ref.short_version()).collect();
    let repos: Vec<String> = applied.iter().map(|&i| short_repo(&updates[i])).collect();
    let news: Vec<String> = applied
        .iter()
        .map(|&i| short_version(&updates[i]))
        .collect();
    let subject = if applied.len() == 1 {
        let repo = &repos[0];
        let new = &news[0];
        if olds.len() == 1 {
            format!(
                "{repo} {} -> {new}",
                olds.iter().next().map(String::as_str).unwrap_or_default()
            )
        } else {
            format!("{repo} -> {new} ({} jobs)", changes.len())
        }
    } else {
        let list = repos
            .iter()
            .zip(&news)
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let candidate = format!("Update {} images: {list}", applied.len());
        if candidate.len() <= 72 {
            candidate
        } else {
            format!("Update {} images in {} jobs", applied.len(), changes.len())
        }
    };
    let body = changes
        .iter()
        .map(|s| {
            format!(
                "- {} ({}): {} -> {}",
                one_line(&s.target()),
                one_line(&s.job_id),
                s.old,
                s.new
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let keys = applied
        .iter()
        .map(|&i| updates[i].key())
        .collect::<Vec<_>>()
        .join(", ");
    let text = match template {
        None => format!("{subject}\n\n{body}"),
        Some(t) => render(t, &|name| {
            Some(match name {
                "subject" => subject.clone(),
                "body" => body.clone(),
                "repository" => repos.join(", "),
                "old" => olds.iter().cloned().collect::<Vec<_>>().join(", "),
                "new" => news.join(", "),
                "keys" => keys.clone(),
                "count" => changes.len().to_string(),
                "images" => applied.len().to_string(),
                "consul_index" => consul_index.map(|i| i.to_string()).unwrap_or_default(),
                _ => return None,
            })
        })?,
    };
    let mut trailers = String::new();
    for &i in &applied {
        let u = &updates[i];
        trailers.push_str(&format!("{TRAILER_KEY}: {}\n", u.key()));
        trailers.push_str(&format!("{TRAILER_MODIFY_INDEX}: {}\n", u.modify_index));
        trailers.push_str(&format!("{TRAILER_VALUE}: {}\n", u.reference()));
        if let Some(idx) = consul_index {
            trailers.push_str(&format!("{TRAILER_CONSUL_INDEX}: {idx}\n"));
        }
    }
    Ok(format!("{}\n\n{trailers}", text.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_text_stays_on_one_line() {
        assert_eq!(
            one_line("a\n\nConsul-Key: x\r"),
            "a\u{FFFD}\u{FFFD}Consul-Key: x\u{FFFD}"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(validate_template("deploy: {subject}\n\n{body} {{literal}}").is_ok());
        assert!(validate_template("{nope}")
            .unwrap_err()
            .contains("unknown placeholder {nope}"));
        assert!(validate_template("{subject").is_err());
        assert!(validate_template("a } b").is_err());
        assert_eq!(
            render("{{x}} {a}", &|n| (n == "a").then(|| "1".into())).unwrap(),
            "{x} 1"
        );
    }
}
