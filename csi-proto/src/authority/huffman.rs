//! The HPACK Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: codes are handed out in order of length, and within
//! a length in order of symbol. So the lengths alone define it, and
//! [`CODE_LENGTHS`] lists, for each length, the symbols with a code of that
//! length (symbol 256 is EOS).

/// RFC 7541 Appendix B as `(code length, symbols)`, shortest codes first.
const CODE_LENGTHS: &[(u32, &[u16])] = &[
    (5, &[48, 49, 50, 97, 99, 101, 105, 111, 115, 116]),
    (
        6,
        &[
            32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104,
            108, 109, 110, 112, 114, 117,
        ],
    ),
    (
        7,
        &[
            58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
            87, 89, 106, 107, 113, 118, 119, 120, 121, 122,
        ],
    ),
    (8, &[38, 42, 44, 59, 88, 90]),
    (10, &[33, 34, 40, 41, 63]),
    (11, &[39, 43, 124]),
    (12, &[35, 62]),
    (13, &[0, 36, 64, 91, 93, 126]),
    (14, &[94, 125]),
    (15, &[60, 96, 123]),
    (19, &[92, 195, 208]),
    (20, &[128, 130, 131, 162, 184, 194, 224, 226]),
    (
        21,
        &[
            153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230,
        ],
    ),
    (
        22,
        &[
            129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185,
            186, 187, 189, 190, 196, 198, 228, 232, 233,
        ],
    ),
    (
        23,
        &[
            1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166,
            168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239,
        ],
    ),
    (
        24,
        &[9, 142, 144, 145, 148, 159, 171, 206, 215, 225, 236, 237],
    ),
    (25, &[199, 207, 234, 235]),
    (
        26,
        &[
            192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255,
        ],
    ),
    (
        27,
        &[
            203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252,
            253, 254,
        ],
    ),
    (
        28,
        &[
            2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28,
            29, 30, 31, 127, 220, 249,
        ],
    ),
    (30, &[10, 13, 22, 256]),
];

/// The end-of-string symbol; only its prefix may appear, as padding.
const EOS: u16 = 256;
/// The longest code.
const MAX_LEN: usize = 30;

/// For each code length: its first code, how many codes it has, and where
/// its symbols start in `symbols`.
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [usize; MAX_LEN + 1],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
    };
    let (mut code, mut prev_len, mut n, mut i) = (0u32, 0u32, 0usize, 0usize);
    while i < CODE_LENGTHS.len() {
        let (len, syms) = CODE_LENGTHS[i];
        code <<= len - prev_len;
        c.first[len as usize] = code;
        c.count[len as usize] = syms.len() as u32;
        c.offset[len as usize] = n;
        let mut j = 0;
        while j < syms.len() {
            c.symbols[n] = syms[j];
            n += 1;
            j += 1;
        }
        code += syms.len() as u32;
        prev_len = len;
        i += 1;
    }
    c
}

static CODE: Canonical = canonical();

/// Decodes a Huffman-coded HPACK string literal; `None` when it is not a
/// valid encoding (EOS inside, padding longer than 7 bits or not all ones).
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > MAX_LEN {
                return None;
            }
            let index = code.wrapping_sub(CODE.first[len]);
            if CODE.count[len] > 0 && code >= CODE.first[len] && index < CODE.count[len] {
                let symbol = CODE.symbols[CODE.offset[len] + index as usize];
                if symbol == EOS {
                    return None;
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    (len < 8 && code == (1u32 << len) - 1).then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes `s` with the same code, for tests: the decoder is checked
    /// against RFC 7541's own examples, this only builds more inputs.
    pub(crate) fn encode(s: &[u8]) -> Vec<u8> {
        let mut codes = [(0u32, 0u32); 257];
        for len in 1..=MAX_LEN {
            for k in 0..CODE.count[len] {
                let symbol = CODE.symbols[CODE.offset[len] + k as usize];
                codes[symbol as usize] = (CODE.first[len] + k, len as u32);
            }
        }
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &b in s {
            let (code, len) = codes[b as usize];
            acc = (acc << len) | u64::from(code);
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn every_symbol_has_one_code_and_the_code_is_complete() {
        let mut seen = [false; 257];
        let mut kraft = 0u64; // sum of 2^(30 - len): exactly 2^30 for a complete code
        for (len, syms) in CODE_LENGTHS {
            for &s in *syms {
                assert!(!seen[s as usize], "symbol {s} listed twice");
                seen[s as usize] = true;
                kraft += 1 << (30 - len);
            }
        }
        assert!(seen.iter().all(|&s| s), "a symbol has no code");
        assert_eq!(kraft, 1 << 30);
        // Spot checks against the printed table of RFC 7541 Appendix B.
        assert_eq!(encode(b"0"), [0b0000_0111]); // '0' = 00000
        assert_eq!(encode(b"&"), [0xf8]); // '&' = 11111000
        assert_eq!(encode(b"\\")[..2], [0xff, 0xfe]); // '\' = 7fff0 [19]
    }

    #[test]
    fn decodes_the_rfc_7541_examples() {
        // Appendix C.4 and C.6.
        for (encoded, plain) in [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
            ("6402", "302"),
            ("aec3771a4b", "private"),
            (
                "d07abe941054d444a8200595040b8166e082a62d1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29ad171863c78f0b97c8e9ae82ae43d3",
                "https://www.example.com",
            ),
        ] {
            assert_eq!(decode(&hex(encoded)).as_deref(), Some(plain.as_bytes()));
            assert_eq!(encode(plain.as_bytes()), hex(encoded), "{plain}");
        }
    }

    #[test]
    fn round_trips_every_byte_value() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)), Some(all));
        assert_eq!(decode(&[]), Some(vec![]));
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // "0" is 00000: padded with 000 instead of 111.
        assert_eq!(decode(&[0b0000_0000]), None);
        // A whole byte of padding (8 ones) after a complete symbol.
        assert_eq!(decode(&[0b0000_0111, 0xff]), None);
        // EOS itself (30 ones) inside the string.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
