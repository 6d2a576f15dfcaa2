//! TLS for the devstack: a local CA that issues server and client certificates ([`TestPki`]),
//! and a TLS-terminating front ([`TlsFront`]) for any double, optionally requiring a client
//! certificate signed by that CA (Consul's `verify_incoming`, a Marathon behind an mTLS proxy).
//!
//! The front reads one request, forwards it to the double over loopback and streams the answer
//! back (the doubles close every connection after one answer, so the event stream works too).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// PEM files of a local CA, a server certificate and a client certificate, in a directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from another CA (must be refused).
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

impl TestPki {
    /// Makes a CA and certificates in `dir`; the server certificate is valid for `names` (DNS
    /// names or IP addresses).
    pub fn generate(dir: &Path, names: &[&str]) -> Result<TestPki, String> {
        let e = |x: rcgen::Error| x.to_string();
        let ca = |cn: &str| -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String> {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            p.distinguished_name
                .push(rcgen::DnType::CommonName, cn.to_string());
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().map_err(e)?)
                .map_err(e)
        };
        let leaf = |issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
                    sans: Vec<String>,
                    usage: rcgen::ExtendedKeyUsagePurpose|
         -> Result<(String, String), String> {
            let mut p = rcgen::CertificateParams::new(sans).map_err(e)?;
            p.extended_key_usages = vec![usage];
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "devstack".to_string());
            let key = rcgen::KeyPair::generate().map_err(e)?;
            let cert = p.signed_by(&key, issuer).map_err(e)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let root = ca("devstack test CA")?;
        let other = ca("somebody else's CA")?;
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let (server_cert, server_key) =
            leaf(&root, names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) = leaf(
            &root,
            vec!["shipwatch-client".into()],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let (stranger_cert, stranger_key) = leaf(
            &other,
            vec!["stranger".into()],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|x| format!("{}: {x}", p.display()))?;
            Ok(p)
        };
        Ok(TestPki {
            ca_cert: write("ca.pem", &root.pem())?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server-key.pem", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client-key.pem", &client_key)?,
            stranger_cert: write("stranger.pem", &stranger_cert)?,
            stranger_key: write("stranger-key.pem", &stranger_key)?,
        })
    }
}

/// A TLS listener on loopback in front of a double at `upstream`.
pub struct TlsFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

fn load(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl TlsFront {
    /// Serves TLS with the PKI's server certificate; with `require_client_cert`, only clients
    /// presenting a certificate of the PKI's CA get through.
    pub fn start(
        upstream: SocketAddr,
        pki: &TestPki,
        require_client_cert: bool,
    ) -> Result<TlsFront, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = rustls_pemfile::certs(&mut &load(&pki.server_cert)?[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = rustls_pemfile::private_key(&mut &load(&pki.server_key)?[..])
            .map_err(|e| e.to_string())?
            .ok_or("no server key")?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &load(&pki.ca_cert)?[..]) {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(
            builder
                .with_single_cert(certs, key)
                .map_err(|e| e.to_string())?,
        );
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("tls-front".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let config = Arc::clone(&config);
                        std::thread::spawn(move || {
                            let _ = relay(conn, config, upstream);
                        });
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(TlsFront { addr, stop })
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// One request through: TLS handshake (client certificate checked by rustls), the request
/// head and body, then the double's answer streamed back until it closes.
fn relay(
    conn: TcpStream,
    config: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let tls = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(tls, conn);
    let mut head = Vec::new();
    {
        let mut reader = BufReader::new(&mut stream);
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" || line == b"\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        head.extend_from_slice(&body);
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
        stream.flush()?;
    }
    stream.conn.send_close_notify();
    let _ = stream.flush();
    Ok(())
}
