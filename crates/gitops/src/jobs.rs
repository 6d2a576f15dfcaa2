//! Where images live in Marathon and Chronos job definitions.
//!
//! Recognized shapes (Marathon REST API `/v2/apps`, `/v2/groups`; Chronos `/v1/scheduler/iso8601` and
//! `/dependency`; see shared/reference/marathon-chronos-and-registrars.md):
//! - Marathon app: an object with a string `id` and a string `container.docker.image`
//!   (Docker and Mesos containerizers both take the image there);
//! - Marathon group: an object with an `apps` and/or `groups` array; apps and nested groups inside are
//!   searched recursively (Marathon allows groups inside groups);
//! - Chronos job: an object with a string `name`, a `schedule` or `parents` member, and a string
//!   `container.image`.
//!
//! Anything else (API responses such as `{"app": {...}}`, package.json, arbitrary config) yields no
//! sites and is therefore never touched.

use std::ops::Range;

use crate::jsonedit::Node;

/// Which scheduler a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A Marathon app (possibly inside a group).
    MarathonApp,
    /// A Chronos job.
    ChronosJob,
}

/// One image string inside a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSite {
    /// JSON pointer (RFC 6901) of the image string, e.g. `/apps/0/container/docker/image`.
    pub pointer: String,
    /// Byte span of the string token in the file.
    pub span: Range<usize>,
    /// The decoded image string.
    pub image: String,
    /// Kind of job.
    pub kind: JobKind,
    /// Marathon app `id` or Chronos job `name`.
    pub job_id: String,
}

/// Every image site in a parsed job file, in document order.
pub fn image_sites(doc: &Node) -> Vec<ImageSite> {
    let mut sites = Vec::new();
    visit(doc, "", 0, &mut sites);
    sites
}

fn visit(node: &Node, pointer: &str, depth: usize, sites: &mut Vec<ImageSite>) {
    if !node.is_object() || depth > crate::jsonedit::MAX_DEPTH {
        return;
    }
    if let Some(site) = marathon_app(node, pointer).or_else(|| chronos_job(node, pointer)) {
        sites.push(site);
        return;
    }
    for member in ["apps", "groups"] {
        if let Some(items) = node.get(member).and_then(Node::as_array) {
            for (i, item) in items.iter().enumerate() {
                visit(item, &format!("{pointer}/{member}/{i}"), depth + 1, sites);
            }
        }
    }
}

fn marathon_app(node: &Node, pointer: &str) -> Option<ImageSite> {
    let id = node.get("id")?.as_str()?;
    let image = node.get("container")?.get("docker")?.get("image")?;
    site(
        image,
        format!("{pointer}/container/docker/image"),
        JobKind::MarathonApp,
        id,
    )
}

fn chronos_job(node: &Node, pointer: &str) -> Option<ImageSite> {
    let name = node.get("name")?.as_str()?;
    if node.get("schedule").is_none() && node.get("parents").is_none() {
        return None;
    }
    let image = node.get("container")?.get("image")?;
    site(
        image,
        format!("{pointer}/container/image"),
        JobKind::ChronosJob,
        name,
    )
}

fn site(image: &Node, pointer: String, kind: JobKind, job_id: &str) -> Option<ImageSite> {
    match image {
        Node::Str { value, span } => Some(ImageSite {
            pointer,
            span: span.clone(),
            image: value.clone(),
            kind,
            job_id: job_id.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonedit::parse;

    fn sites(s: &str) -> Vec<(String, String, JobKind, String)> {
        image_sites(&parse(s.as_bytes()).unwrap())
            .into_iter()
            .map(|s| (s.pointer, s.image, s.kind, s.job_id))
            .collect()
    }

    #[test]
    fn marathon_app_fixture_shape() {
        let got = sites(
            r#"{"id":"bridged-webapp","container":{"type":"DOCKER","docker":{"image":"python:3"}}}"#,
        );
        assert_eq!(
            got,
            vec![(
                "/container/docker/image".into(),
                "python:3".into(),
                JobKind::MarathonApp,
                "bridged-webapp".into()
            )]
        );
    }

    #[test]
    fn nested_groups() {
        let got = sites(
            r#"{"id":"/prod","apps":[{"id":"a","container":{"docker":{"image":"x:1"}}},{"id":"nodocker","cmd":"sleep 1"}],
               "groups":[{"id":"db","apps":[{"id":"b","container":{"docker":{"image":"y:2"}}}],
                          "groups":[{"id":"deep","apps":[{"id":"c","container":{"docker":{"image":"z:3"}}}]}]}]}"#,
        );
        let pointers: Vec<_> = got.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/apps/0/container/docker/image",
                "/groups/0/apps/0/container/docker/image",
                "/groups/0/groups/0/apps/0/container/docker/image"
            ]
        );
    }

    #[test]
    fn chronos_jobs() {
        let got = sites(
            r#"{"schedule":"R/2014-09-25T17:22:00Z/PT2M","name":"dockerjob","container":{"type":"DOCKER","image":"libmesos/ubuntu"}}"#,
        );
        assert_eq!(got[0].0, "/container/image");
        assert_eq!(got[0].2, JobKind::ChronosJob);
        let dependent = sites(r#"{"parents":["a"],"name":"child","container":{"image":"x"}}"#);
        assert_eq!(dependent.len(), 1);
    }

    #[test]
    fn non_jobs_are_ignored() {
        for doc in [
            r#"{"app":{"id":"/myapp","container":{"docker":{"image":"x:1"}}}}"#,
            r#"{"container":{"docker":{"image":"x:1"}}}"#,
            r#"{"name":"pkg","container":{"image":"x:1"}}"#,
            r#"{"id":"a","container":{"docker":{"image":5}}}"#,
            r#"[{"id":"a","container":{"docker":{"image":"x"}}}]"#,
            r#""image""#,
        ] {
            assert!(sites(doc).is_empty(), "{doc}");
        }
    }
}
