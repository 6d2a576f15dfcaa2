//! Marathon REST v2 calls the handlers make (reference §1).

use runtime::http::{encode_path, encode_query, HttpClient, HttpRequest};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::MarathonError;

/// The answer to a change: `{deploymentId, version}` (PUT/DELETE) or the app with `deployments`
/// (POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployResult {
    pub deployment_id: Option<String>,
    pub version: Option<String>,
    /// 201 when PUT created the app.
    pub created: bool,
}

/// A Marathon client (one HA set).
#[derive(Debug)]
pub struct Marathon {
    http: HttpClient,
}

/// Encodes an app id for the URL path (ids are `[a-z0-9.-]` segments, but a bad id from a config
/// must not smuggle a query string).
fn id_path(app_id: &str) -> String {
    encode_path(app_id.trim_start_matches('/'))
}

impl Marathon {
    pub fn new(http: HttpClient) -> Marathon {
        Marathon { http }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// `GET /v2/apps[?embed=apps.tasks][&label=SELECTOR]`: every app in one request.
    pub fn list_apps(
        &self,
        embed_tasks: bool,
        label: Option<&str>,
    ) -> Result<Vec<Value>, MarathonError> {
        self.list_apps_map(embed_tasks, label, |app| app)
    }

    /// Like [`Marathon::list_apps`], handing each app to `f` as soon as it is decoded, so that a
    /// caller reducing 10,000 apps (to ids, or to their normalized form) never holds the whole
    /// decoded list.
    pub fn list_apps_map<T>(
        &self,
        embed_tasks: bool,
        label: Option<&str>,
        f: impl FnMut(Value) -> T,
    ) -> Result<Vec<T>, MarathonError> {
        let resp = self.get_apps(embed_tasks, label)?;
        // Strict: the answer must hold an `apps` array. `{}`, `{"apps": null}`, `null` or an
        // HTML page with 200 (a proxy, a Marathon between leaders) is not "no apps", and a
        // caller that deletes what is missing must never read it as such.
        let mut de = serde_json::Deserializer::from_slice(&resp.body);
        let apps = serde::de::DeserializeSeed::deserialize(AppsSeed(f), &mut de)
            .and_then(|apps| de.end().map(|_| apps))
            .map_err(|e| MarathonError::Http(resp.decode_error(&e.to_string())))?;
        Ok(apps)
    }

    /// Like [`Marathon::list_apps_map`], handing `f` each app as its raw JSON text, a slice of
    /// the answer: a caller that needs only a few fields of most apps (`id`, `version`) reads
    /// them without building a tree of every app (issue 13). The same strict read.
    pub fn list_apps_raw<T>(
        &self,
        embed_tasks: bool,
        label: Option<&str>,
        f: impl FnMut(&RawValue) -> T,
    ) -> Result<Vec<T>, MarathonError> {
        #[derive(serde::Deserialize)]
        struct Apps<'a> {
            #[serde(borrow)]
            apps: Vec<&'a RawValue>,
        }
        let resp = self.get_apps(embed_tasks, label)?;
        let apps: Apps<'_> = serde_json::from_slice(&resp.body)
            .map_err(|e| MarathonError::Http(resp.decode_error(&e.to_string())))?;
        Ok(apps.apps.into_iter().map(f).collect())
    }

    /// `GET /v2/apps[?embed=apps.tasks][&label=SELECTOR]`, answered 2xx.
    fn get_apps(
        &self,
        embed_tasks: bool,
        label: Option<&str>,
    ) -> Result<runtime::http::HttpResponse, MarathonError> {
        let mut query = Vec::new();
        if embed_tasks {
            query.push("embed=apps.tasks".to_string());
        }
        if let Some(l) = label {
            query.push(format!("label={}", encode_query(l)));
        }
        let path = if query.is_empty() {
            "/v2/apps".to_string()
        } else {
            format!("/v2/apps?{}", query.join("&"))
        };
        let resp = self.http.get(&path)?;
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        Ok(resp)
    }

    /// `GET /v2/leader`: `Some("host:port")` when Marathon names a leader (200
    /// `{"leader":"host:port"}`), `None` during an election (404 `{"message":"There is no
    /// leader"}`; reference §1.1, leader.raml). Any other answer is an error.
    pub fn leader(&self) -> Result<Option<String>, MarathonError> {
        let resp = self.http.get("/v2/leader")?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        let v: Value = resp.json()?;
        match v.get("leader").and_then(Value::as_str) {
            Some(l) if !l.is_empty() => Ok(Some(l.to_string())),
            _ => Err(MarathonError::Http(
                resp.decode_error(r#"expected an object {"leader": "host:port"}"#),
            )),
        }
    }

    /// `GET /v2/apps/{id}?embed=app.tasks` (Marathon embeds tasks, counts and deployments on
    /// this endpoint anyway, AppsResource.show); `None` for 404.
    pub fn get_app(&self, app_id: &str) -> Result<Option<Value>, MarathonError> {
        let resp = self
            .http
            .get(&format!("/v2/apps/{}?embed=app.tasks", id_path(app_id)))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        let mut v: Value = resp.json()?;
        match v.get_mut("app").map(Value::take) {
            Some(app @ Value::Object(_)) => Ok(Some(app)),
            _ => Err(MarathonError::Http(
                resp.decode_error(r#"expected an object {"app": {...}}"#),
            )),
        }
    }

    /// `GET /v2/groups/versions`: the root group's stored versions (Marathon makes one on every
    /// change to any app, and keeps the newest `--zk_max_versions`). The newest of them changes
    /// whenever anything in Marathon changed. Strict: an array of strings.
    pub fn root_versions(&self) -> Result<Vec<String>, MarathonError> {
        let resp = self.http.get("/v2/groups/versions")?;
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| MarathonError::Http(resp.decode_error(&e.to_string())))
    }

    /// `PUT /v2/apps/{id}?partialUpdate=false[&force=true]`: create or fully replace, so a field
    /// removed from the desired definition is removed in Marathon (reference §1.3).
    pub fn put_app(&self, app: &Value, force: bool) -> Result<DeployResult, MarathonError> {
        let app_id = app.get("id").and_then(Value::as_str).unwrap_or_default();
        let path = format!(
            "/v2/apps/{}?partialUpdate=false{}",
            id_path(app_id),
            if force { "&force=true" } else { "" }
        );
        let resp = self.http.send(HttpRequest::new("PUT", &path).json(app))?;
        if !resp.is_success() {
            return Err(MarathonError::from_response(app_id, &resp));
        }
        Ok(deploy_result(&resp))
    }

    /// `PUT /v2/apps?partialUpdate=false[&force=true]` with an array: creates or fully replaces
    /// every app in ONE deployment (AppsResource.replaceMultiple), all or nothing: one invalid
    /// app refuses the whole request (4xx), one locked app too (409).
    pub fn put_apps<A: serde::Serialize>(
        &self,
        apps: &[A],
        force: bool,
    ) -> Result<DeployResult, MarathonError> {
        let path = format!(
            "/v2/apps?partialUpdate=false{}",
            if force { "&force=true" } else { "" }
        );
        let body = serde_json::to_vec(apps).unwrap_or_default();
        let resp = self
            .http
            .send(HttpRequest::new("PUT", &path).body(body, "application/json"))?;
        if !resp.is_success() {
            let what = format!("(one request for {} apps)", apps.len());
            return Err(MarathonError::from_response(&what, &resp));
        }
        Ok(deploy_result(&resp))
    }

    /// `DELETE /v2/apps/{id}` (Marathon's `force` defaults to true here).
    pub fn delete_app(&self, app_id: &str) -> Result<DeployResult, MarathonError> {
        let resp = self.http.send(HttpRequest::new(
            "DELETE",
            &format!("/v2/apps/{}", id_path(app_id)),
        ))?;
        if !resp.is_success() {
            return Err(MarathonError::from_response(app_id, &resp));
        }
        Ok(deploy_result(&resp))
    }

    /// `GET /v2/apps/{id}/versions`: the stored versions of an app (ISO-8601 timestamps);
    /// `None` for 404.
    pub fn app_versions(&self, app_id: &str) -> Result<Option<Vec<String>>, MarathonError> {
        let resp = self
            .http
            .get(&format!("/v2/apps/{}/versions", id_path(app_id)))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        let v: Value = resp.json()?;
        match v.get("versions").and_then(Value::as_array) {
            Some(vs) => Ok(Some(
                vs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            )),
            None => Err(MarathonError::Http(
                resp.decode_error(r#"expected an object {"versions": [...]}"#),
            )),
        }
    }

    /// Marathon's rollback: `PUT /v2/apps/{id}?force=true` with `{"id", "version"}` restores
    /// that stored version as a new deployment (reference §1.3 "`version` in the body":
    /// `AppHelpers.updateOrRollback`). `force` replaces the deployment that holds the app.
    pub fn rollback_app(&self, app_id: &str, version: &str) -> Result<DeployResult, MarathonError> {
        let path = format!("/v2/apps/{}?force=true", id_path(app_id));
        let body = serde_json::json!({"id": app_id, "version": version});
        let resp = self.http.send(HttpRequest::new("PUT", &path).json(&body))?;
        if !resp.is_success() {
            return Err(MarathonError::from_response(app_id, &resp));
        }
        Ok(deploy_result(&resp))
    }

    /// `GET /v2/deployments`.
    pub fn deployments(&self) -> Result<Vec<Value>, MarathonError> {
        let resp = self.http.get("/v2/deployments")?;
        if !resp.is_success() {
            return Err(MarathonError::from_read(&resp));
        }
        match resp.json::<Value>()? {
            Value::Array(ds) => Ok(ds),
            _ => Err(MarathonError::Http(
                resp.decode_error("expected a JSON array of deployments"),
            )),
        }
    }
}

/// Decodes `{"apps": [...], ...}` element by element (other members are skipped).
struct AppsSeed<F>(F);

impl<'de, T, F: FnMut(Value) -> T> serde::de::DeserializeSeed<'de> for AppsSeed<F> {
    type Value = Vec<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T, F: FnMut(Value) -> T> serde::de::Visitor<'de> for AppsSeed<F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"an object {"apps": [...]}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        let mut f = self.0;
        let mut out = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "apps" && out.is_none() {
                out = Some(map.next_value_seed(EachApp(&mut f))?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        out.ok_or_else(|| serde::de::Error::custom(r#"no "apps" array in the answer"#))
    }
}

struct EachApp<'f, F>(&'f mut F);

impl<'de, T, F: FnMut(Value) -> T> serde::de::DeserializeSeed<'de> for EachApp<'_, F> {
    type Value = Vec<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, F: FnMut(Value) -> T> serde::de::Visitor<'de> for EachApp<'_, F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of apps")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(app) = seq.next_element::<Value>()? {
            out.push((self.0)(app));
        }
        Ok(out)
    }
}

fn deploy_result(resp: &runtime::http::HttpResponse) -> DeployResult {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let deployment_id = body
        .get("deploymentId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| resp.header("Marathon-Deployment-Id").map(str::to_string))
        .or_else(|| {
            body.get("deployments")
                .and_then(|d| d.get(0))
                .and_then(|d| d.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    DeployResult {
        deployment_id,
        version: body
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_string),
        created: resp.status == 201,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(body: &str) -> Result<Vec<Value>, String> {
        let mut de = serde_json::Deserializer::from_str(body);
        serde::de::DeserializeSeed::deserialize(AppsSeed(|v| v), &mut de)
            .and_then(|apps| de.end().map(|_| apps))
            .map_err(|e| e.to_string())
    }

    // Marathon answers `{"apps": [...]}` (AppsResource.index); during a leader election or
    // behind a proxy a 200 can carry `{}`, `null` or HTML: never "no apps" (issue 11).
    #[test]
    fn apps_list_must_hold_an_apps_array() {
        assert_eq!(strict(r#"{"apps":[]}"#).unwrap().len(), 0);
        assert_eq!(strict(r#"{"apps":[{"id":"/a"}],"x":1}"#).unwrap().len(), 1);
        for bad in [
            "{}",
            "null",
            r#"{"apps":null}"#,
            r#"{"apps":{}}"#,
            "<html></html>",
            "[]",
        ] {
            assert!(strict(bad).is_err(), "{bad} must not read as a list");
        }
    }

    #[test]
    fn ids_cannot_inject_a_query() {
        assert_eq!(id_path("/sami/api"), "sami/api");
        assert_eq!(id_path("/a?force=true"), "a%3Fforce%3Dtrue");
    }
}
