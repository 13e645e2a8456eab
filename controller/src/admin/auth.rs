//! The admin API's credential: a bearer token read from a file.
//!
//! Mutating requests (`POST`) always need it; on TCP every request does.
//! Reads on the Unix socket stay open to whoever the socket file's
//! permissions admit.

use std::path::Path;

use http::{HeaderMap, Method, StatusCode};

use crate::error::{ControllerError, Result};

/// A bearer token the admin API accepts.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token from `path` (surrounding whitespace trimmed); an
    /// unreadable or empty file is a configuration error.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ControllerError::io(format!("reading admin token file {}", path.display()), e)
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ControllerError::Config(format!(
                "admin token file {} is empty; write a random secret into it",
                path.display()
            )));
        }
        Ok(AdminToken(token.to_string()))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`
    /// (compared in constant time).
    fn presented_in(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Why a request is refused before routing: the status and the message.
pub(super) fn refusal(
    token: Option<&AdminToken>,
    tcp: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Option<(StatusCode, String)> {
    let mutating = !matches!(*method, Method::GET | Method::HEAD);
    if !mutating && !tcp {
        return None;
    }
    match token {
        None => Some((
            StatusCode::FORBIDDEN,
            "this admin API has no token configured, so it refuses mutating requests; \
             start the controller with --admin-token-file"
                .to_string(),
        )),
        Some(t) if t.presented_in(headers) => None,
        Some(_) => Some((
            StatusCode::UNAUTHORIZED,
            format!(
                "{} needs `Authorization: Bearer <admin token>` (the controller's \
                 --admin-token-file; `shorthorn ctl --token-file`)",
                if mutating {
                    "a mutating request"
                } else {
                    "the admin API on TCP"
                }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn posts_and_tcp_need_the_token_unix_reads_do_not() {
        let t = AdminToken("s3cret".into());
        let ok = headers(Some("Bearer s3cret"));
        let none = headers(None);
        let wrong = headers(Some("Bearer s3cres"));
        assert!(refusal(Some(&t), false, &Method::GET, &none).is_none());
        assert!(refusal(None, false, &Method::GET, &none).is_none());
        assert!(refusal(Some(&t), false, &Method::POST, &ok).is_none());
        assert!(refusal(Some(&t), true, &Method::GET, &ok).is_none());
        for (token, tcp, method, h, status) in [
            (
                Some(&t),
                false,
                Method::POST,
                &none,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Some(&t),
                false,
                Method::POST,
                &wrong,
                StatusCode::UNAUTHORIZED,
            ),
            (Some(&t), true, Method::GET, &none, StatusCode::UNAUTHORIZED),
            (None, false, Method::POST, &ok, StatusCode::FORBIDDEN),
            (None, true, Method::GET, &ok, StatusCode::FORBIDDEN),
        ] {
            assert_eq!(refusal(token, tcp, &method, h).map(|r| r.0), Some(status));
        }
    }
}
