//! JSON-RPC over HTTP POST with a bearer token (the Shorthorn node agent).
//!
//! `https://` with a [`ClientTls`] (a CA or a pinned certificate), or plain
//! `http://` to a loopback address only: [`check_endpoint`] decides, so the
//! token never crosses a network in clear.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};

use super::Transport;
use crate::error::{Result, SpdkError};
use crate::https::{check_endpoint, error_chain, ClientTls, HttpClient};
use crate::protocol::{Request, Response};

/// Transport that POSTs each request to a URL with `Authorization: Bearer`.
///
/// The token is never printed: `Debug` shows only the URL.
pub struct HttpTransport {
    uri: Uri,
    authorization: HeaderValue,
    client: HttpClient,
}

impl HttpTransport {
    /// Creates a plain-HTTP transport for `url` on a loopback address (e.g.
    /// `http://127.0.0.1:9500/jsonrpc`); any other host needs [`HttpTransport::secure`].
    pub fn new(url: &str, token: &str) -> Result<HttpTransport> {
        Self::build(url, token, None)
    }

    /// Creates a transport for `url` that verifies HTTPS servers with `tls`
    /// (e.g. `https://10.0.0.5:9500/jsonrpc`; plain `http://` only to loopback).
    pub fn secure(url: &str, token: &str, tls: &ClientTls) -> Result<HttpTransport> {
        Self::build(url, token, Some(tls))
    }

    fn build(url: &str, token: &str, tls: Option<&ClientTls>) -> Result<HttpTransport> {
        let uri: Uri = url
            .parse()
            .map_err(|e| SpdkError::InvalidEndpoint(format!("{url}: {e}")))?;
        // Deliberately does not echo the token on failure.
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                SpdkError::InvalidEndpoint(
                    "token contains characters not allowed in a header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        check_endpoint(&uri, tls).map_err(SpdkError::InvalidEndpoint)?;
        let client = HttpClient::new(tls);
        Ok(HttpTransport {
            uri,
            authorization,
            client,
        })
    }

    /// The endpoint URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("uri", &self.uri)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: &Request) -> Result<Response> {
        let body = serde_json::to_vec(request).map_err(|source| SpdkError::Encode {
            method: request.method.clone(),
            source,
        })?;
        let http_request = http::Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SpdkError::Transport(format!("building HTTP request: {e}")))?;
        let http_response = self
            .client
            .request(http_request)
            .await
            .map_err(|e| SpdkError::Transport(error_chain(&e)))?;
        let status = http_response.status();
        if !status.is_success() {
            return Err(SpdkError::Http {
                status: status.as_u16(),
            });
        }
        let bytes = http_response
            .into_body()
            .collect()
            .await
            .map_err(|e| SpdkError::Transport(format!("reading HTTP body: {e}")))?
            .to_bytes();
        let response: Response = serde_json::from_slice(&bytes).map_err(|e| {
            SpdkError::Protocol(format!("HTTP body is not a JSON-RPC response: {e}"))
        })?;
        match response.numeric_id() {
            Some(id) if id != request.id => Err(SpdkError::Protocol(format!(
                "response id {id} does not match request id {}",
                request.id
            ))),
            _ => Ok(response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_token() {
        let transport =
            HttpTransport::new("http://127.0.0.1:1/jsonrpc", "s3cret-token").expect("valid");
        let shown = format!("{transport:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }

    #[test]
    fn rejects_other_schemes() {
        assert!(matches!(
            HttpTransport::new("ftp://host/x", "t"),
            Err(SpdkError::InvalidEndpoint(_))
        ));
        assert!(matches!(
            HttpTransport::new("host:1/x", "t"),
            Err(SpdkError::InvalidEndpoint(_))
        ));
    }

    #[test]
    fn bad_token_error_does_not_echo_it() {
        let err =
            HttpTransport::new("http://h/x", "bad\ntoken-value").expect_err("newline is invalid");
        assert!(!err.to_string().contains("token-value"));
    }
}
