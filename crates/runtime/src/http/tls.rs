//! The TLS step of every client: rustls with the operator's settings (CA file or directory,
//! else the web roots; a client certificate; a server name to verify against instead of the
//! URL's host), as a ureq connector after the TCP connection. Verification is never turned off.
//!
//! ureq 3's own rustls connector takes CA and client certificates but cannot verify against
//! another name than the URL's (Consul's CONSUL_TLS_SERVER_NAME), hence this one.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConnection, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

use super::{ConfigError, HttpConfig};

/// The connector: wraps the TCP transport in TLS for `https://` URLs.
#[derive(Debug)]
pub(super) struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl Tls {
    pub(super) fn new(cfg: &HttpConfig) -> Result<Tls, ConfigError> {
        let server_name =
            match &cfg.server_name {
                None => None,
                Some(n) => Some(rustls::pki_types::ServerName::try_from(n.clone()).map_err(
                    |e| ConfigError::Invalid(format!("{} TLS server name {n:?}: {e}", cfg.service)),
                )?),
            };
        Ok(Tls {
            config: Arc::new(tls_config(cfg)?),
            server_name,
        })
    }
}

impl<In: Transport> Connector<In> for Tls {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = details
                    .uri
                    .host()
                    .ok_or(ureq::Error::Tls("no host in the URL"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                rustls::pki_types::ServerName::try_from(host)
                    .map_err(|_| ureq::Error::Tls("the URL's host is not a valid TLS name"))?
            }
        };
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A TLS connection as ureq's transport.
pub(super) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// The rustls configuration of a client with the operator's TLS settings: CA file and/or CA
/// directory (else the web roots), a client certificate, a server name to verify against.
/// Verification is never turned off.
fn tls_config(cfg: &HttpConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let service = cfg.service;
    let bad = |what: &Path, why: String| {
        ConfigError::Invalid(format!("{service} TLS file {}: {why}", what.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut ca_files: Vec<std::path::PathBuf> = cfg.ca_file.iter().cloned().collect();
    if let Some(dir) = &cfg.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        ca_files.extend(files);
    }
    for path in &ca_files {
        let pem = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| bad(path, e.to_string()))?;
            roots.add(cert).map_err(|e| bad(path, e.to_string()))?;
        }
    }
    if ca_files.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else if roots.is_empty() {
        let shown = ca_files[0].clone();
        return Err(bad(&shown, "no PEM certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid(format!("{service} TLS: {e}")))?;
    let roots = Arc::new(roots);
    let builder = match &cfg.server_name {
        None => builder.with_root_certificates(Arc::clone(&roots)),
        Some(name) => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::clone(&roots),
                provider,
            )
            .build()
            .map_err(|e| ConfigError::Invalid(format!("{service} TLS: {e}")))?;
            let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                ConfigError::Invalid(format!("{service} TLS server name {name:?}: {e}"))
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name }))
        }
    };
    match &cfg.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let pem = std::fs::read(cert).map_err(|e| bad(cert, e.to_string()))?;
            let certs = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, e.to_string()))?;
            if certs.is_empty() {
                return Err(bad(cert, "no PEM certificate found".into()));
            }
            let pem = std::fs::read(key).map_err(|e| bad(key, e.to_string()))?;
            let key_der = rustls_pemfile::private_key(&mut &pem[..])
                .map_err(|e| bad(key, e.to_string()))?
                .ok_or_else(|| bad(key, "no PEM private key found".into()))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| bad(cert, e.to_string()))
        }
    }
}

/// Verifies the server's certificate in full, against a configured name instead of the URL's
/// host (Consul's CONSUL_TLS_SERVER_NAME: agents reached by IP present `server.dc1.consul`).
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
