//! Lets gRPC clients that send a Unix socket path as `:authority` reach a
//! tonic server.
//!
//! gRPC C-core (Python grpcio 1.57 and newer, and the other C-core based
//! clients) sends the percent-encoded socket path as the HTTP/2 `:authority`
//! of every call on a `unix:` channel (`tmp%2Fcsi.sock`); grpc-java and
//! grpcurl send the path itself. tonic's HTTP/2 layer, h2, parses
//! `:authority` as an RFC 3986 authority and resets the stream with
//! PROTOCOL_ERROR when that fails (hyperium/h2#487, still open; no h2, hyper
//! or tonic option turns the check off). The Kubernetes sidecars (grpc-go)
//! send `localhost` and are unaffected.
//!
//! [`AuthorityFix`] wraps an accepted connection and rewrites what the client
//! sends before h2 reads it: in each header block, an `:authority` value h2
//! would reject is replaced by a valid one of the same length (every octet
//! that is not unreserved becomes `_`). Nothing else changes: blocks with a
//! valid `:authority` reach h2 as the exact bytes that were sent, and the
//! server's replies are not touched. Shorthorn does not use `:authority` (a
//! Unix socket has no host to name).
//!
//! Written here rather than taken from a crate: h2 keeps its HPACK code
//! private, and the HPACK crates decode and re-encode whole blocks, which
//! would mean keeping a second pair of dynamic tables in step. Replacing one
//! value in place takes only a frame reader, a field walker and a Huffman
//! decoder (RFC 9113, RFC 7541).

mod frames;
mod hpack;
mod huffman;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use frames::Rewriter;

/// How much is read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A server-side connection whose client-sent `:authority` values are made
/// acceptable to h2 (see the [module docs](self)).
#[derive(Debug)]
pub struct AuthorityFix<T> {
    inner: T,
    rewriter: Rewriter,
    /// Rewritten bytes not yet read by h2, from `pending_pos` on.
    pending: Vec<u8>,
    pending_pos: usize,
    chunk: Box<[u8]>,
    eof: bool,
    logged: bool,
}

impl<T> AuthorityFix<T> {
    /// Wraps an accepted connection.
    pub fn new(inner: T) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            pending: Vec::new(),
            pending_pos: 0,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
            logged: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// How many header blocks had their `:authority` replaced so far.
    pub fn rewritten_blocks(&self) -> u64 {
        self.rewriter.rewritten()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_pos < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_pos);
                buf.put_slice(&this.pending[this.pending_pos..this.pending_pos + n]);
                this.pending_pos += n;
                if this.pending_pos == this.pending.len() {
                    this.pending.clear();
                    this.pending_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let read = chunk.filled();
            if read.is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.pending);
            } else {
                this.rewriter.feed(read, &mut this.pending);
            }
            if !this.logged && this.rewriter.rewritten() > 0 {
                this.logged = true;
                tracing::debug!(
                    "client sent an :authority h2 rejects (a socket path); replaced it (hyperium/h2#487)"
                );
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for AuthorityFix<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_rewritten_stream_and_writes_through() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = AuthorityFix::new(server);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let block = hpack::tests::grpcio_block();
        input.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4, 0, 0, 0, 1]);
        input.extend_from_slice(&block);
        let sent = input.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(7) {
                client.write_all(piece).await.unwrap();
            }
            client.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), input.len());
        assert!(!got.windows(3).any(|w| w == b"%2F"), "the path is replaced");
        assert_eq!(conn.rewritten_blocks(), 1);
        conn.write_all(b"reply").await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
    }
}
