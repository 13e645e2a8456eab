//! The agent's bearer token: loaded once, compared in constant time, never
//! printed.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{NodeError, Result};

/// The shared secret a caller must present as `Authorization: Bearer <token>`.
///
/// Only a SHA-256 digest of the token is kept, so the secret itself is never
/// held in memory after loading and comparisons run over equal-length
/// digests whatever the presented length. `Debug` prints a placeholder.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// Builds a token from its secret value; leading and trailing whitespace
    /// (a trailing newline in a mounted Secret) is ignored.
    pub fn new(secret: &str) -> Result<Self> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(NodeError::Config {
                what: "bearer token",
                reason: "the token is empty".to_owned(),
            });
        }
        Ok(BearerToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Reads the token from a file (for instance a mounted Kubernetes Secret).
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| NodeError::io("read agent token file", path, e))?;
        Self::new(&raw).map_err(|_| NodeError::Config {
            what: "bearer token",
            reason: format!("token file {} is empty", path.display()),
        })
    }

    /// True when `presented` is this token, in time independent of where the
    /// two differ and of the presented length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let candidate: [u8; 32] = Sha256::digest(presented).into();
        self.digest.ct_eq(&candidate).into()
    }

    /// Checks an `Authorization` header value: the `Bearer` scheme (any case)
    /// followed by the token.
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else {
            return false;
        };
        const SCHEME: &[u8] = b"bearer ";
        if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
            return false;
        }
        self.matches(value[SCHEME.len()..].trim_ascii())
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_token_with_bearer_scheme() {
        let t = BearerToken::new("s3cret\n").unwrap();
        assert!(t.authorizes(Some(b"Bearer s3cret")));
        assert!(t.authorizes(Some(b"bearer s3cret")));
        assert!(!t.authorizes(None));
        assert!(!t.authorizes(Some(b"Bearer s3cre")));
        assert!(!t.authorizes(Some(b"Bearer s3cret2")));
        assert!(!t.authorizes(Some(b"Basic s3cret")));
        assert!(!t.authorizes(Some(b"Bearer ")));
        assert!(!t.authorizes(Some(b"s3cret")));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = BearerToken::new("hunter2-token").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn empty_token_is_refused() {
        assert!(BearerToken::new(" \n").is_err());
    }
}
