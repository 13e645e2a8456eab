//! The client-to-server side of an HTTP/2 connection (RFC 9113), rewritten
//! one header block at a time.
//!
//! Every frame but HEADERS and its CONTINUATIONs passes through as it
//! arrives. A header block is held until END_HEADERS, then handed to
//! [`sanitize_authority`]: unchanged blocks go out as the exact frames that
//! came in; a changed block goes out as a HEADERS frame (and CONTINUATIONs
//! when it is longer than the smallest frame size a peer must accept),
//! without padding, with the same stream, END_STREAM flag and priority.
//!
//! Whatever is not plain HTTP/2 from a client (another protocol, a frame
//! between a HEADERS and its CONTINUATION, a block past [`MAX_BLOCK`]) turns
//! the rewriter into a pass-through for the rest of the connection, so h2
//! sees the original bytes and applies its own rules and limits.

use super::hpack::sanitize_authority;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
/// SETTINGS_MAX_FRAME_SIZE's initial value: every peer accepts it.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// The most of one header block held back (its frames as received); a
/// larger block is forwarded untouched, for h2 to limit.
pub(crate) const MAX_BLOCK: usize = 256 * 1024;

/// Rewrites the bytes a client sends, as they arrive in any pieces.
#[derive(Debug)]
pub(crate) struct Rewriter {
    state: State,
    /// The header block being held, from its HEADERS frame on.
    block: Option<Block>,
    /// How many header blocks were rewritten.
    rewritten: u64,
}

#[derive(Debug)]
enum State {
    /// Matching the connection preface; this many bytes matched so far.
    Preface(usize),
    /// Reading a frame header.
    FrameHeader {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Forwarding this many more payload bytes of a frame.
    Forward(usize),
    /// Holding this many more payload bytes of a header block frame.
    Hold(usize),
    /// Not rewriting anything any more.
    PassThrough,
}

#[derive(Debug, Default)]
struct Block {
    /// The frames as received, headers included.
    received: Vec<u8>,
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    /// The header block fragments so far.
    fragments: Vec<u8>,
    /// The current frame: type, flags and the payload so far.
    frame_type: u8,
    frame_flags: u8,
    payload: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::Preface(0),
            block: None,
            rewritten: 0,
        }
    }
}

impl Rewriter {
    /// How many header blocks had an `:authority` replaced so far.
    pub(crate) fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// Processes the next bytes from the client, appending what h2 is to
    /// read to `out`.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::PassThrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(input.len());
                    if input[..n] != PREFACE[*matched..*matched + n] {
                        self.state = State::PassThrough;
                        continue;
                    }
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *matched += n;
                    if *matched == PREFACE.len() {
                        self.state = State::frame_header();
                    }
                }
                State::FrameHeader { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(input.len());
                    buf[*have..*have + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    *have += n;
                    if *have == FRAME_HEADER_LEN {
                        let header = *buf;
                        self.start_frame(header, out);
                    }
                }
                State::Forward(remaining) => {
                    let n = (*remaining).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *remaining -= n;
                    if *remaining == 0 {
                        self.state = State::frame_header();
                    }
                }
                State::Hold(remaining) => {
                    let n = (*remaining).min(input.len());
                    *remaining -= n;
                    let done = *remaining == 0;
                    if let Some(block) = self.block.as_mut() {
                        block.received.extend_from_slice(&input[..n]);
                        block.payload.extend_from_slice(&input[..n]);
                    }
                    input = &input[n..];
                    if done {
                        self.end_frame(out);
                    }
                }
            }
        }
    }

    /// At the end of the client's stream: forwards a block held so far.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        self.give_up(out);
    }

    /// Forwards the held frames as received and stops rewriting.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.received);
        }
        self.state = State::PassThrough;
    }

    fn start_frame(&mut self, header: [u8; FRAME_HEADER_LEN], out: &mut Vec<u8>) {
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (frame_type, flags) = (header[3], header[4]);
        let stream = [header[5] & 0x7f, header[6], header[7], header[8]];
        match self.block.as_mut() {
            Some(block) if frame_type == CONTINUATION && block.stream == stream => {
                block.received.extend_from_slice(&header);
                block.frame_type = frame_type;
                block.frame_flags = flags;
            }
            Some(_) => {
                // Only CONTINUATIONs of the same stream may follow (RFC 9113
                // section 6.10): h2 will end the connection for this.
                self.give_up(out);
                out.extend_from_slice(&header);
                return;
            }
            None if frame_type == HEADERS => {
                self.block = Some(Block {
                    received: header.to_vec(),
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    frame_type,
                    frame_flags: flags,
                    ..Block::default()
                });
            }
            None => {
                out.extend_from_slice(&header);
                self.state = if len == 0 {
                    State::frame_header()
                } else {
                    State::Forward(len)
                };
                return;
            }
        }
        if self
            .block
            .as_ref()
            .is_some_and(|b| b.received.len() + len > MAX_BLOCK)
        {
            self.give_up(out);
            return;
        }
        self.state = State::Hold(len);
        if len == 0 {
            self.end_frame(out);
        }
    }

    /// A HEADERS or CONTINUATION frame is complete.
    fn end_frame(&mut self, out: &mut Vec<u8>) {
        let Some(block) = self.block.as_mut() else {
            self.state = State::frame_header();
            return;
        };
        let payload = std::mem::take(&mut block.payload);
        let fragment = if block.frame_type == HEADERS {
            headers_fragment(&payload, block.frame_flags).map(|(priority, fragment)| {
                block.priority = priority;
                fragment
            })
        } else {
            Some(&payload[..])
        };
        let Some(fragment) = fragment else {
            // Padding longer than the payload: h2 rejects it.
            self.give_up(out);
            return;
        };
        block.fragments.extend_from_slice(fragment);
        self.state = State::frame_header();
        if block.frame_flags & END_HEADERS == 0 {
            return; // CONTINUATION frames follow
        }
        let Some(block) = self.block.take() else {
            return;
        };
        match sanitize_authority(&block.fragments) {
            None => out.extend_from_slice(&block.received),
            Some(fixed) => {
                self.rewritten += 1;
                write_header_block(out, &block, &fixed);
            }
        }
    }
}

impl State {
    fn frame_header() -> State {
        State::FrameHeader {
            buf: [0; FRAME_HEADER_LEN],
            have: 0,
        }
    }
}

/// Splits a HEADERS payload into its priority fields and its fragment,
/// dropping padding (RFC 9113 section 6.2).
fn headers_fragment(payload: &[u8], flags: u8) -> Option<(Option<[u8; PRIORITY_LEN]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, tail) = rest.split_first()?;
        pad = usize::from(n);
        rest = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields = rest.get(..PRIORITY_LEN)?;
        priority = Some(fields.try_into().ok()?);
        rest = &rest[PRIORITY_LEN..];
    }
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

/// Writes `fragments` as the header block of `block`'s stream.
fn write_header_block(out: &mut Vec<u8>, block: &Block, fragments: &[u8]) {
    let priority: &[u8] = block.priority.as_ref().map_or(&[], |p| &p[..]);
    let first_len = fragments.len().min(MAX_FRAME_PAYLOAD - priority.len());
    let (first, mut rest) = fragments.split_at(first_len);
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    write_frame_header(
        out,
        priority.len() + first.len(),
        HEADERS,
        flags,
        block.stream,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        rest = tail;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        write_frame_header(out, chunk.len(), CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
    }
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, frame_type: u8, flags: u8, stream: [u8; 4]) {
    out.extend_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        frame_type,
        flags,
    ]);
    out.extend_from_slice(&stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::hpack::tests::{grpcio_block, literal_new_name};

    const SETTINGS: &[u8] = &[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x2, 0, 0, 0, 0];
    const STREAM_1: [u8; 4] = [0, 0, 0, 1];

    fn frame(frame_type: u8, flags: u8, stream: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(&mut out, payload.len(), frame_type, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn data(stream: [u8; 4], payload: &[u8]) -> Vec<u8> {
        frame(0x0, END_STREAM, stream, payload)
    }

    /// Feeds `input` in pieces of `chunk` bytes, then ends the stream.
    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, u64) {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.feed(piece, &mut out);
        }
        r.finish(&mut out);
        (out, r.rewritten())
    }

    /// The same output for every way the input can arrive.
    fn run_all_chunkings(input: &[u8]) -> (Vec<u8>, u64) {
        let whole = run(input, input.len().max(1));
        for chunk in [1, 2, 3, 7, 9, 10, 64] {
            assert_eq!(run(input, chunk), whole, "chunks of {chunk}");
        }
        whole
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut c = PREFACE.to_vec();
        c.extend_from_slice(SETTINGS);
        for f in frames {
            c.extend_from_slice(f);
        }
        c
    }

    fn fixed_grpcio_block() -> Vec<u8> {
        sanitize_authority(&grpcio_block()).unwrap()
    }

    #[test]
    fn rewrites_the_headers_frame_and_forwards_everything_else() {
        let body = data(STREAM_1, &[0, 0, 0, 0, 0]);
        let input = connection(&[
            frame(HEADERS, END_HEADERS, STREAM_1, &grpcio_block()),
            body.clone(),
        ]);
        let (out, rewritten) = run_all_chunkings(&input);
        let expected = connection(&[
            frame(HEADERS, END_HEADERS, STREAM_1, &fixed_grpcio_block()),
            body,
        ]);
        assert_eq!(out, expected);
        assert_eq!(rewritten, 1);
    }

    #[test]
    fn drops_padding_and_keeps_priority_and_end_stream() {
        let mut payload = vec![3]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 0, 15]); // exclusive, depends on 0, weight 15
        payload.extend(grpcio_block());
        payload.extend_from_slice(&[0, 0, 0]);
        let flags = END_HEADERS | END_STREAM | PADDED | PRIORITY;
        let (out, _) = run_all_chunkings(&connection(&[frame(HEADERS, flags, STREAM_1, &payload)]));
        let mut want = vec![0x80, 0, 0, 0, 15];
        want.extend(fixed_grpcio_block());
        let flags = END_HEADERS | END_STREAM | PRIORITY;
        assert_eq!(out, connection(&[frame(HEADERS, flags, STREAM_1, &want)]));
    }

    #[test]
    fn joins_continuations_and_splits_what_exceeds_a_frame() {
        // A block split over HEADERS + 2 CONTINUATIONs comes out in one frame.
        let block = grpcio_block();
        let (a, rest) = block.split_at(5);
        let (b, c) = rest.split_at(20);
        let input = connection(&[
            frame(HEADERS, 0, STREAM_1, a),
            frame(CONTINUATION, 0, STREAM_1, b),
            frame(CONTINUATION, END_HEADERS, STREAM_1, c),
        ]);
        let (out, _) = run_all_chunkings(&input);
        assert_eq!(
            out,
            connection(&[frame(HEADERS, END_HEADERS, STREAM_1, &fixed_grpcio_block())])
        );

        // A block larger than 16 KiB is split at 16 KiB.
        let mut big = grpcio_block();
        big.extend(literal_new_name(0x00, b"x-big", &vec![b'x'; 20_000]));
        let fixed = sanitize_authority(&big).unwrap();
        let input = connection(&[
            frame(HEADERS, 0, STREAM_1, &big[..16_000]),
            frame(CONTINUATION, END_HEADERS, STREAM_1, &big[16_000..]),
        ]);
        let (out, _) = run(&input, 4096);
        let want = connection(&[
            frame(HEADERS, 0, STREAM_1, &fixed[..MAX_FRAME_PAYLOAD]),
            frame(
                CONTINUATION,
                END_HEADERS,
                STREAM_1,
                &fixed[MAX_FRAME_PAYLOAD..],
            ),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn forwards_valid_blocks_as_received() {
        let block = literal_new_name(0x40, b":authority", b"localhost");
        let mut payload = vec![2];
        payload.extend(&block);
        payload.extend_from_slice(&[0, 0]);
        let input = connection(&[
            frame(HEADERS, PADDED, STREAM_1, &payload),
            frame(CONTINUATION, END_HEADERS, STREAM_1, &[0x82]),
            data(STREAM_1, b"hello"),
            frame(0x8, 0, [0; 4], &[0, 0, 1, 0]), // WINDOW_UPDATE
        ]);
        assert_eq!(run_all_chunkings(&input), (input, 0));
    }

    #[test]
    fn passes_through_what_is_not_a_well_formed_client_stream() {
        // Not HTTP/2.
        let http1 = b"GET / HTTP/1.1\r\nHost: %2Ftmp\r\n\r\n".to_vec();
        assert_eq!(run_all_chunkings(&http1), (http1, 0));
        // A DATA frame between HEADERS and its CONTINUATION.
        let input = connection(&[
            frame(HEADERS, 0, STREAM_1, &grpcio_block()),
            data(STREAM_1, b"x"),
            frame(CONTINUATION, END_HEADERS, STREAM_1, &[0x82]),
            frame(HEADERS, END_HEADERS, [0, 0, 0, 3], &grpcio_block()),
        ]);
        assert_eq!(run_all_chunkings(&input), (input, 0));
        // A CONTINUATION of another stream.
        let input = connection(&[
            frame(HEADERS, 0, STREAM_1, &grpcio_block()),
            frame(CONTINUATION, END_HEADERS, [0, 0, 0, 3], &[0x82]),
        ]);
        assert_eq!(run_all_chunkings(&input), (input, 0));
        // Padding longer than the frame.
        let input = connection(&[frame(HEADERS, END_HEADERS | PADDED, STREAM_1, &[9, 0x82])]);
        assert_eq!(run_all_chunkings(&input), (input, 0));
        // A block that never ends, past MAX_BLOCK.
        let mut frames = vec![frame(HEADERS, 0, STREAM_1, &grpcio_block())];
        for _ in 0..(MAX_BLOCK / MAX_FRAME_PAYLOAD + 1) {
            frames.push(frame(CONTINUATION, 0, STREAM_1, &[0x82; MAX_FRAME_PAYLOAD]));
        }
        let input = connection(&frames);
        assert_eq!(run(&input, 10_000), (input, 0));
        // Cut off in the middle of a held block: what came is forwarded.
        let input = connection(&[frame(HEADERS, END_HEADERS, STREAM_1, &grpcio_block())]);
        let cut = &input[..input.len() - 3];
        assert_eq!(run(cut, 5), (cut.to_vec(), 0));
    }

    #[test]
    fn rewrites_every_request_of_a_connection() {
        let mut frames = Vec::new();
        for stream in [1u8, 3, 5] {
            let id = [0, 0, 0, stream];
            frames.push(frame(HEADERS, END_HEADERS, id, &grpcio_block()));
            frames.push(data(id, &[0; 5]));
        }
        let (out, rewritten) = run_all_chunkings(&connection(&frames));
        assert_eq!(rewritten, 3);
        assert_eq!(out.len(), connection(&frames).len());
    }
}
