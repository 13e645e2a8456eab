//! HTTPS clients to a node agent, shared by this crate's HTTP transport and
//! by `agent-api`'s agent client, so that both trust servers the same way.
//!
//! - [`ServerTrust`] says which servers to believe: those whose certificate
//!   a CA in a PEM file signed, or exactly one pinned certificate.
//! - [`ClientTls`] is that trust built once (rustls with the ring provider,
//!   TLS 1.2 and 1.3; the connector offers HTTP/1.1 by ALPN), cheap to clone.
//! - [`check_endpoint`] is the one rule on URLs that carry a bearer token:
//!   `https://` needs a [`ClientTls`]; plain `http://` is refused unless the
//!   host is a loopback address, so a token never crosses a network in clear.
//! - [`HttpClient`] is the pooled hyper client over either, and
//!   [`error_chain`] / [`tls_failure`] describe what it reports.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Which HTTPS servers a client believes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Servers whose certificate chains to a CA in this PEM file, for the
    /// name the client asks for.
    CaFile(PathBuf),
    /// Exactly the certificate in this PEM file (its first one), whatever
    /// name it carries: for a self-signed agent certificate.
    PinnedCertFile(PathBuf),
}

/// Why a TLS client setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A trust file could not be read or holds no certificate.
    #[error("TLS trust file {path}: {reason}")]
    TrustFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A server name override is not a DNS name or IP address.
    #[error("TLS server name {name:?} is not a DNS name or IP address")]
    ServerName {
        /// The rejected name.
        name: String,
    },
    /// rustls refused the setup.
    #[error("TLS client setup: {0}")]
    Setup(String),
}

/// A built TLS client setup: what to trust, and optionally the one name every
/// server must prove (instead of the host of each URL). Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    trust: ServerTrust,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("trust", &self.trust)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the trust files and builds the client setup.
    pub fn new(trust: &ServerTrust) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let config = match trust {
            ServerTrust::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots.add(cert).map_err(|e| TlsError::TrustFile {
                        path: path.clone(),
                        reason: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            ServerTrust::PinnedCertFile(path) => {
                let pinned = read_certs(path)?.swap_remove(0);
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedCert::new(pinned, &provider)))
                    .with_no_client_auth()
            }
        };
        // ALPN (http/1.1) is set by the connector.
        Ok(Self {
            config: Arc::new(config),
            trust: trust.clone(),
            server_name: None,
        })
    }

    /// Every server must prove `name` (a DNS name or IP address), whatever
    /// host its URL names: agents found by address behind one Service name
    /// share one certificate for that name.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
            name: name.to_owned(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// What this setup trusts.
    pub fn trust(&self) -> &ServerTrust {
        &self.trust
    }

    /// A hyper connector speaking HTTPS with this setup (and plain HTTP for
    /// the URLs [`check_endpoint`] lets through).
    pub fn connector(&self) -> HttpsConnector<HttpConnector> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.config).clone())
            .https_or_http();
        match &self.server_name {
            Some(name) => builder
                .with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
                .enable_http1()
                .build(),
            None => builder.enable_http1().build(),
        }
    }
}

/// A pooled hyper HTTP/1 client: plain `http://` only, or HTTPS (and plain
/// HTTP) with a [`ClientTls`]. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HttpClient(Connector);

#[derive(Clone)]
enum Connector {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = matches!(self.0, Connector::Tls(_));
        f.debug_struct("HttpClient").field("tls", &tls).finish()
    }
}

/// How long a pooled connection may idle before it is dropped: below the node
/// agent's 10 s header-read timeout, which closes idle keep-alive connections.
/// With the default (90 s) a request could be sent on a connection the agent
/// was closing: "connection closed before message completed" (seen in
/// csi-sanity on real SPDK in the VM, where everything is slower).
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

impl HttpClient {
    /// A client speaking HTTPS with `tls`, or plain HTTP only without it.
    pub fn new(tls: Option<&ClientTls>) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        HttpClient(match tls {
            Some(tls) => Connector::Tls(builder.build(tls.connector())),
            None => Connector::Plain(builder.build(HttpConnector::new())),
        })
    }

    /// Sends one request.
    pub async fn request(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
        match &self.0 {
            Connector::Plain(client) => client.request(request).await,
            Connector::Tls(client) => client.request(request).await,
        }
    }
}

/// Renders an error and its sources on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The TLS failure (certificate refused, handshake failed) behind a client
/// error, if that is what it was. rustls errors reach hyper inside (possibly
/// nested) `io::Error`s.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        let mut inner: &(dyn std::error::Error + 'static) = e;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        current = e.source();
    }
    None
}

/// The rule for a URL that will carry a bearer token: `https://` needs a TLS
/// setup, `http://` is allowed only to a loopback host. The error says what
/// to change.
pub fn check_endpoint(uri: &Uri, tls: Option<&ClientTls>) -> Result<(), String> {
    match (uri.scheme_str(), tls) {
        (Some("https"), Some(_)) => Ok(()),
        (Some("https"), None) => Err(format!(
            "{uri}: https:// needs a CA or pinned certificate to verify the server with"
        )),
        (Some("http"), _) if uri.host().is_some_and(is_loopback) => Ok(()),
        (Some("http"), _) => Err(format!(
            "{uri}: plain http:// would send the bearer token in clear; use https:// with a CA \
             or pinned certificate (plain http is allowed only to a loopback address)"
        )),
        (Some(other), _) => Err(format!(
            "{uri}: scheme {other} is not supported, use https (or http to loopback)"
        )),
        (None, _) => Err(format!("{uri}: missing https:// scheme")),
    }
}

/// Whether `host` (as in a URL, IPv6 in brackets) names this machine.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::TrustFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Accepts exactly one end-entity certificate. Signatures are still checked,
/// so the server must hold the pinned certificate's private key.
#[derive(Debug)]
struct PinnedCert {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    fn new(cert: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        Self {
            cert,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let ok = |u: &str| check_endpoint(&u.parse().unwrap(), None);
        assert!(ok("http://127.0.0.1:9810/jsonrpc").is_ok());
        assert!(ok("http://127.8.0.1:1").is_ok());
        assert!(ok("http://[::1]:9810").is_ok());
        assert!(ok("http://localhost:9810").is_ok());
        let err = ok("http://10.0.0.5:9810/jsonrpc").unwrap_err();
        assert!(err.contains("in clear"), "{err}");
        assert!(ok("http://node-a.example:9810").is_err());
        let err = ok("https://10.0.0.5:9810").unwrap_err();
        assert!(err.contains("CA or pinned"), "{err}");
        assert!(ok("ftp://127.0.0.1/x").is_err());
    }

    #[test]
    fn unreadable_or_empty_trust_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = ClientTls::new(&ServerTrust::CaFile(missing.clone())).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let err = ClientTls::new(&ServerTrust::PinnedCertFile(empty)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
