//! Finds the `:authority` fields of an HPACK header block (RFC 7541) and
//! replaces a value h2 would reject with a valid one of the same length.
//!
//! The block is walked field by field; nothing is decoded but the
//! `:authority` names and values. Same length matters: a field with
//! incremental indexing enters both the client's and h2's dynamic tables,
//! each entry counts `32 + name + value` octets against the table size, and
//! equal sizes keep the two tables evicting the same entries. Later requests
//! that refer to the entry by index then get the valid value from h2's table.

use super::huffman;

/// The static table's `:authority` (RFC 7541 Appendix A, index 1).
const STATIC_AUTHORITY: usize = 1;
const AUTHORITY: &[u8] = b":authority";
/// Integers longer than this are malformed for our purposes (h2 limits
/// header blocks far below it).
const MAX_INTEGER: usize = 1 << 28;
const MAX_INTEGER_SHIFT: u32 = 28;

/// Returns the block with every invalid `:authority` value replaced, or
/// `None` when there is nothing to replace or the block does not parse
/// (then h2 gets it unchanged and judges it itself).
pub(crate) fn sanitize_authority(block: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader { block, pos: 0 };
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    while reader.pos < block.len() {
        let first = block[reader.pos];
        if first & 0x80 != 0 {
            reader.integer(7)?; // indexed field: the table holds a checked value
            continue;
        }
        if first & 0xe0 == 0x20 {
            reader.integer(5)?; // dynamic table size update
            continue;
        }
        // Literal with incremental indexing (01), without indexing (0000)
        // or never indexed (0001): name index, or 0 and a literal name.
        let prefix = if first & 0x40 != 0 { 6 } else { 4 };
        let is_authority = match reader.integer(prefix)? {
            0 => reader.string()?.decode()? == AUTHORITY,
            index => index == STATIC_AUTHORITY,
        };
        let value_start = reader.pos;
        let value = reader.string()?;
        if !is_authority {
            continue;
        }
        let decoded = value.decode()?;
        if is_valid_authority(&decoded) {
            continue;
        }
        let replacement = same_length_authority(&decoded);
        if !is_valid_authority(&replacement) {
            continue; // empty: nothing of that length is valid
        }
        let out = out.get_or_insert_with(|| Vec::with_capacity(block.len() + 64));
        out.extend_from_slice(&block[copied..value_start]);
        write_raw_string(out, &replacement);
        copied = reader.pos;
    }
    let mut out = out?;
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

/// Whether h2 accepts `value` as `:authority` (it parses it this way).
pub(crate) fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `value` with every octet that is not unreserved (RFC 3986: letters,
/// digits, `-._~`) replaced by `_`: a registered name of the same length.
fn same_length_authority(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                b
            } else {
                b'_'
            }
        })
        .collect()
}

/// Appends `value` as a string literal without Huffman coding.
fn write_raw_string(out: &mut Vec<u8>, value: &[u8]) {
    write_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// Appends `n` as an HPACK integer with a `prefix`-bit prefix, `flags` in
/// the first octet's high bits (RFC 7541 section 5.1).
fn write_integer(out: &mut Vec<u8>, flags: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(flags | n as u8);
        return;
    }
    out.push(flags | max as u8);
    n -= max;
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A string literal's octets as they are on the wire.
struct Literal<'a> {
    huffman: bool,
    octets: &'a [u8],
}

impl Literal<'_> {
    fn decode(&self) -> Option<Vec<u8>> {
        if self.huffman {
            huffman::decode(self.octets)
        } else {
            Some(self.octets.to_vec())
        }
    }
}

struct Reader<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads an integer with a `prefix`-bit prefix (RFC 7541 section 5.1).
    fn integer(&mut self, prefix: u32) -> Option<usize> {
        let max = (1usize << prefix) - 1;
        let mut n = usize::from(*self.block.get(self.pos)?) & max;
        self.pos += 1;
        if n < max {
            return Some(n);
        }
        let mut shift = 0;
        loop {
            let b = *self.block.get(self.pos)?;
            self.pos += 1;
            n += usize::from(b & 0x7f) << shift;
            if n > MAX_INTEGER {
                return None;
            }
            if b & 0x80 == 0 {
                return Some(n);
            }
            shift += 7;
            if shift > MAX_INTEGER_SHIFT {
                return None; // zero continuation octets without end
            }
        }
    }

    /// Reads a string literal (RFC 7541 section 5.2).
    fn string(&mut self) -> Option<Literal<'a>> {
        let huffman = *self.block.get(self.pos)? & 0x80 != 0;
        let len = self.integer(7)?;
        let end = self.pos.checked_add(len)?;
        let octets = self.block.get(self.pos..end)?;
        self.pos = end;
        Some(Literal { huffman, octets })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::huffman::tests::encode as huffman_encode;

    /// A literal field with a literal name, as gRPC C-core writes it.
    pub(crate) fn literal_new_name(flags: u8, name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        write_raw_string(&mut out, name);
        write_raw_string(&mut out, value);
        out
    }

    /// A literal field naming a table entry, with a Huffman-coded value
    /// (how Go's and Java's encoders write `:authority`).
    fn literal_indexed_name(flags: u8, prefix: u32, index: usize, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_integer(&mut out, flags, prefix, index);
        let coded = huffman_encode(value);
        write_integer(&mut out, 0x80, 7, coded.len());
        out.extend_from_slice(&coded);
        out
    }

    /// What grpcio 1.85 (C-core) sent for `unix:/tmp/h23-tap.sock`, recorded:
    /// `:method POST`, `:scheme http`, `:path`, `:authority`, and the rest.
    pub(crate) fn grpcio_block() -> Vec<u8> {
        let mut b = vec![0x83, 0x86];
        b.extend(literal_new_name(
            0x40,
            b":path",
            b"/csi.v1.Identity/GetPluginInfo",
        ));
        b.extend(literal_new_name(0x40, b":authority", b"tmp%2Fh23-tap.sock"));
        b.extend(literal_new_name(0x40, b"content-type", b"application/grpc"));
        b.extend(literal_new_name(0x40, b"te", b"trailers"));
        b
    }

    /// Every field of a block, decoded, with the table never consulted:
    /// literal names and values only (enough for the blocks built here).
    fn literals(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r = Reader { block, pos: 0 };
        let mut fields = Vec::new();
        while r.pos < block.len() {
            let first = block[r.pos];
            if first & 0x80 != 0 {
                r.integer(7).unwrap();
                continue;
            }
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            let name = match r.integer(prefix).unwrap() {
                0 => r.string().unwrap().decode().unwrap(),
                i => format!("#{i}").into_bytes(),
            };
            fields.push((name, r.string().unwrap().decode().unwrap()));
        }
        fields
    }

    #[test]
    fn replaces_grpcio_percent_encoded_path_with_a_same_length_name() {
        let block = grpcio_block();
        let out = sanitize_authority(&block).expect("rewritten");
        let fields = literals(&out);
        let authority = &fields.iter().find(|(n, _)| n == AUTHORITY).unwrap().1;
        assert_eq!(authority, b"tmp_2Fh23-tap.sock");
        assert_eq!(authority.len(), "tmp%2Fh23-tap.sock".len());
        assert!(is_valid_authority(authority));
        // Every other field is untouched, octet for octet.
        assert_eq!(out.len(), block.len());
        let diff: Vec<usize> = (0..out.len()).filter(|&i| out[i] != block[i]).collect();
        assert_eq!(diff.len(), 1, "only the %, now _, changes");
    }

    #[test]
    fn replaces_a_huffman_coded_path_after_the_static_name() {
        // Literal with incremental indexing, name = static index 1.
        let mut block = vec![0x82, 0x86, 0x84];
        block.extend(literal_indexed_name(0x40, 6, 1, b"/tmp/csi.sock"));
        block.extend(literal_indexed_name(0x40, 6, 31, b"application/grpc"));
        let out = sanitize_authority(&block).expect("rewritten");
        let fields = literals(&out);
        assert_eq!(fields[0], (b"#1".to_vec(), b"_tmp_csi.sock".to_vec()));
        assert_eq!(fields[1], (b"#31".to_vec(), b"application/grpc".to_vec()));
        assert_eq!(&out[..3], &block[..3]);
    }

    #[test]
    fn replaces_in_never_indexed_and_non_indexed_fields_too() {
        for flags in [0x00, 0x10] {
            let block = literal_indexed_name(flags, 4, 1, b"/var/lib/csi.sock");
            let fields = literals(&sanitize_authority(&block).expect("rewritten"));
            assert_eq!(fields[0].1, b"_var_lib_csi.sock");
        }
        // A Huffman-coded literal name.
        let mut block = vec![0x40];
        let name = huffman_encode(AUTHORITY);
        write_integer(&mut block, 0x80, 7, name.len());
        block.extend(&name);
        write_raw_string(&mut block, b"a b");
        let fields = literals(&sanitize_authority(&block).expect("rewritten"));
        assert_eq!(fields[0], (AUTHORITY.to_vec(), b"a_b".to_vec()));
    }

    #[test]
    fn leaves_valid_authorities_and_other_fields_alone() {
        for value in [
            &b"localhost"[..],
            b"localhost:50051",
            b"[::1]:9000",
            b"a.b-c_d~e",
        ] {
            let raw = literal_new_name(0x40, AUTHORITY, value);
            assert_eq!(sanitize_authority(&raw), None, "{value:?}");
            let coded = literal_indexed_name(0x40, 6, 1, value);
            assert_eq!(sanitize_authority(&coded), None, "{value:?}");
        }
        // A percent-encoded path under another name is not an authority.
        let other = literal_new_name(0x40, b"x-socket", b"tmp%2Fcsi.sock");
        assert_eq!(sanitize_authority(&other), None);
        // Indexed fields and size updates only.
        assert_eq!(
            sanitize_authority(&[0x82, 0x86, 0xbe, 0x3f, 0xe1, 0x1f]),
            None
        );
    }

    #[test]
    fn leaves_malformed_blocks_to_h2() {
        let block = grpcio_block();
        for cut in 1..block.len() {
            // Truncated inside a field: unparsable, unless the cut falls
            // after the authority field, which is then still replaced.
            if let Some(out) = sanitize_authority(&block[..cut]) {
                assert!(literals(&out)
                    .iter()
                    .any(|(n, v)| n == AUTHORITY && is_valid_authority(v)));
            }
        }
        // Huffman value with bad padding.
        let mut bad = vec![0x41, 0x81, 0x00];
        assert_eq!(sanitize_authority(&bad), None);
        // Integers that never end, or grow past any header block.
        bad = vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(sanitize_authority(&bad), None);
        bad = [&[0x7f][..], &[0x80; 64]].concat();
        assert_eq!(sanitize_authority(&bad), None);
        // An empty authority has no valid replacement.
        assert_eq!(
            sanitize_authority(&literal_new_name(0x40, AUTHORITY, b"")),
            None
        );
    }

    #[test]
    fn integers_round_trip_across_prefix_boundaries() {
        for prefix in [4, 5, 6, 7] {
            for n in [
                0,
                1,
                14,
                15,
                16,
                30,
                31,
                62,
                63,
                126,
                127,
                128,
                300,
                16_384,
                1 << 20,
            ] {
                let mut buf = Vec::new();
                write_integer(&mut buf, 0, prefix, n);
                let mut r = Reader {
                    block: &buf,
                    pos: 0,
                };
                assert_eq!(r.integer(prefix), Some(n));
                assert_eq!(r.pos, buf.len());
            }
        }
    }
}
