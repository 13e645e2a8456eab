//! Bounded reading of request bodies.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body is longer than the limit; reading stopped at the limit.
    TooLarge,
    /// The connection failed while reading.
    Read(String),
}

/// Reads a whole body, failing as soon as more than `limit` bytes arrive so a
/// client can never make the agent buffer more than `limit`.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// True when a declared `Content-Length` already exceeds `limit`.
pub fn declared_too_large(headers: &http::HeaderMap, limit: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn stops_at_the_limit() {
        let small = Full::new(Bytes::from_static(b"12345"));
        assert_eq!(read_limited(small, 5).await.unwrap(), "12345");
        let big = Full::new(Bytes::from_static(b"123456"));
        assert!(matches!(
            read_limited(big, 5).await,
            Err(BodyError::TooLarge)
        ));
    }
}
