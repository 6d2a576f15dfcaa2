//! Endpoints from flags, falling back to the environment variables the ecosystem already uses
//! (Consul's CLI: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
//! CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL,
//! CONSUL_DATACENTER, CONSUL_NAMESPACE, CONSUL_PARTITION; the same _CACERT/_CLIENT_CERT/_CLIENT_KEY
//! for MARATHON_ and CHRONOS_; marathon-python / marathon-lb: MARATHON_URL, MARATHON_USERNAME,
//! MARATHON_PASSWORD; CHRONOS_URL). Secrets come from the environment or files only, never flags
//! (flags show in `ps`), and clap never prints env values in `--help`.

use std::path::PathBuf;

use clap::Args;

use crate::deadline::Deadline;
use crate::http::{Auth, ConfigError, HttpClient, HttpConfig};
use crate::redact::Secret;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// `--consul ADDR` (env CONSUL_HTTP_ADDR; default 127.0.0.1:8500).
#[derive(Debug, Clone, Args, Default)]
pub struct ConsulArgs {
    /// Consul HTTP address: host:port, http(s)://host:port. Token from CONSUL_HTTP_TOKEN or
    /// CONSUL_HTTP_TOKEN_FILE; CA from CONSUL_CACERT.
    #[arg(
        long = "consul",
        value_name = "ADDR",
        env = "CONSUL_HTTP_ADDR",
        hide_env_values = true
    )]
    pub consul_addr: Option<String>,

    /// Consul datacenter to address (Consul's `?dc=`; default: the agent's).
    #[arg(long = "datacenter", value_name = "DC", env = "CONSUL_DATACENTER")]
    pub datacenter: Option<String>,
}

impl ConsulArgs {
    /// The client for Consul, configured from the flag and the environment.
    pub fn client(&self, deadline: Deadline) -> Result<HttpClient, ConfigError> {
        let url = consul_url(self.consul_addr.as_deref())?;
        Ok(HttpClient::new(&[url], self.http_config()?)?.with_deadline(deadline))
    }

    /// The settings of every Consul client (token, TLS, `dc`/`ns`/`partition`), for clients of
    /// other agents than `--consul` too (tasks2consul's per-host agents).
    pub fn http_config(&self) -> Result<HttpConfig, ConfigError> {
        let mut cfg = HttpConfig::new("consul");
        // Consul answers 500 for "No cluster leader" and other transient server-side states.
        cfg.retry_statuses = vec![429, 500, 502, 503, 504];
        cfg.auth = match consul_token()? {
            Some(t) => Auth::ConsulToken(t),
            None => Auth::None,
        };
        tls_from_env(&mut cfg, "CONSUL")?;
        cfg.ca_path = env("CONSUL_CAPATH").map(PathBuf::from);
        cfg.server_name = env("CONSUL_TLS_SERVER_NAME");
        // As Consul's own CLI passes them (api/api.go): `dc`, `ns` and `partition` query
        // parameters on every request.
        if let Some(dc) = self.datacenter.clone().filter(|d| !d.trim().is_empty()) {
            cfg.default_query.push(("dc".into(), dc));
        }
        if let Some(ns) = env("CONSUL_NAMESPACE") {
            cfg.default_query.push(("ns".into(), ns));
        }
        if let Some(p) = env("CONSUL_PARTITION") {
            cfg.default_query.push(("partition".into(), p));
        }
        Ok(cfg)
    }
}

/// Normalizes a Consul address as the Consul CLI does (api/api.go): `host:port` is http unless
/// CONSUL_HTTP_SSL=true; `unix://` sockets are not supported by this client.
pub fn consul_url(addr: Option<&str>) -> Result<String, ConfigError> {
    let addr = addr
        .map(str::to_string)
        .or_else(|| env("CONSUL_HTTP_ADDR"))
        .unwrap_or_else(|| "127.0.0.1:8500".to_string());
    let addr = addr.trim();
    if addr.starts_with("unix://") {
        return Err(ConfigError::Invalid(
            "CONSUL_HTTP_ADDR unix:// sockets are not supported; use http(s)://host:port".into(),
        ));
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Ok(addr.trim_end_matches('/').to_string());
    }
    let ssl = env("CONSUL_HTTP_SSL").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE"));
    Ok(format!("{}://{addr}", if ssl { "https" } else { "http" }))
}

/// CONSUL_HTTP_TOKEN, else the contents of CONSUL_HTTP_TOKEN_FILE.
pub fn consul_token() -> Result<Option<Secret>, ConfigError> {
    if let Some(t) = env("CONSUL_HTTP_TOKEN") {
        return Ok(Some(Secret::new(t.trim())));
    }
    if let Some(path) = env("CONSUL_HTTP_TOKEN_FILE") {
        let t = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Invalid(format!("CONSUL_HTTP_TOKEN_FILE {path}: {e}")))?;
        let t = t.trim();
        if !t.is_empty() {
            return Ok(Some(Secret::new(t)));
        }
    }
    Ok(None)
}

/// `--marathon URL[,URL...]` (env MARATHON_URL).
#[derive(Debug, Clone, Args, Default)]
pub struct MarathonArgs {
    /// Marathon base URL(s), comma-separated for an HA set (tried in order on connection
    /// errors and 502/503/504). Credentials from MARATHON_USERNAME/MARATHON_PASSWORD or
    /// MARATHON_TOKEN, or user:password@ in the URL.
    #[arg(
        long = "marathon",
        value_name = "URL[,URL...]",
        env = "MARATHON_URL",
        hide_env_values = true
    )]
    pub marathon_urls: Option<String>,
}

impl MarathonArgs {
    pub fn client(&self, deadline: Deadline) -> Result<HttpClient, ConfigError> {
        ha_client(
            "marathon",
            self.marathon_urls.as_deref(),
            ["MARATHON_USERNAME", "MARATHON_PASSWORD", "MARATHON_TOKEN"],
            deadline,
        )?
        .ok_or_else(|| {
            ConfigError::Invalid("no Marathon URL: pass --marathon or set MARATHON_URL".into())
        })
    }
}

/// `--chronos URL[,URL...]` (env CHRONOS_URL). Optional: without it, Chronos jobs are skipped.
#[derive(Debug, Clone, Args, Default)]
pub struct ChronosArgs {
    /// Chronos base URL(s), comma-separated. Credentials from CHRONOS_USERNAME/CHRONOS_PASSWORD
    /// or user:password@ in the URL.
    #[arg(
        long = "chronos",
        value_name = "URL[,URL...]",
        env = "CHRONOS_URL",
        hide_env_values = true
    )]
    pub chronos_urls: Option<String>,
}

impl ChronosArgs {
    /// `None` when no Chronos is configured.
    pub fn client(&self, deadline: Deadline) -> Result<Option<HttpClient>, ConfigError> {
        ha_client(
            "chronos",
            self.chronos_urls.as_deref(),
            ["CHRONOS_USERNAME", "CHRONOS_PASSWORD", "CHRONOS_TOKEN"],
            deadline,
        )
    }
}

/// A client for an HA set given as a comma list (`None` when the list is empty), authenticated
/// from the `[user, password, token]` environment variables.
fn ha_client(
    service: &'static str,
    urls: Option<&str>,
    [user_var, pass_var, token_var]: [&str; 3],
    deadline: Deadline,
) -> Result<Option<HttpClient>, ConfigError> {
    let Some(urls) = urls.map(split_list).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let mut cfg = HttpConfig::new(service);
    cfg.auth = basic_or_token(user_var, pass_var, token_var);
    tls_from_env(&mut cfg, &service.to_ascii_uppercase())?;
    Ok(Some(HttpClient::new(&urls, cfg)?.with_deadline(deadline)))
}

/// `<PREFIX>_CACERT`, `<PREFIX>_CLIENT_CERT` and `<PREFIX>_CLIENT_KEY` (Consul's CLI names,
/// applied to Marathon and Chronos alike). A certificate without its key is a usage error.
fn tls_from_env(cfg: &mut HttpConfig, prefix: &str) -> Result<(), ConfigError> {
    cfg.ca_file = env(&format!("{prefix}_CACERT")).map(PathBuf::from);
    let cert = env(&format!("{prefix}_CLIENT_CERT"));
    let key = env(&format!("{prefix}_CLIENT_KEY"));
    cfg.client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(format!(
                "{prefix}_CLIENT_CERT and {prefix}_CLIENT_KEY go together: set both or neither"
            )))
        }
    };
    Ok(())
}

fn basic_or_token(user_var: &str, pass_var: &str, token_var: &str) -> Auth {
    if let (Some(user), Some(pass)) = (env(user_var), env(pass_var)) {
        return Auth::Basic {
            user,
            password: Secret::new(pass),
        };
    }
    match env(token_var) {
        Some(t) => Auth::DcosToken(Secret::new(t)),
        None => Auth::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_addresses_normalize_like_the_cli() {
        assert_eq!(
            consul_url(Some("10.0.0.1:8500")).unwrap(),
            "http://10.0.0.1:8500"
        );
        assert_eq!(
            consul_url(Some("https://c:8501/")).unwrap(),
            "https://c:8501"
        );
        assert!(consul_url(Some("unix:///var/run/consul.sock")).is_err());
    }
}
