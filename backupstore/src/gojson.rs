//! Byte-exact emulation of Go's `encoding/json` output for the few shapes the
//! backupstore files use, and lenient readers for the values Go writes.
//!
//! Go's encoder differs from serde_json in ways that matter for byte
//! compatibility: it escapes `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`,
//! always escapes U+2028/U+2029, writes control characters other than `\n`,
//! `\r` and `\t` as `\u00XX` (lower-case hex), and a field tagged
//! `json:",string"` is written as a JSON string holding the JSON encoding of
//! the value, so a Go `string` field with that tag is quoted twice
//! (`"\"lz4\""`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Appends `s` as a JSON string literal the way Go's `appendString` does.
pub(crate) fn push_quoted(out: &mut String, s: &str, escape_html: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c if (c as u32) < 0x20 => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object written field by field in declaration order, as Go writes structs.
pub(crate) struct GoObject {
    out: String,
    first: bool,
}

impl GoObject {
    pub(crate) fn new() -> Self {
        GoObject {
            out: String::from("{"),
            first: true,
        }
    }

    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_quoted(&mut self.out, name, true);
        self.out.push(':');
    }

    /// A plain Go `string` field.
    pub(crate) fn string(&mut self, name: &str, value: &str) -> &mut Self {
        self.key(name);
        push_quoted(&mut self.out, value, true);
        self
    }

    /// A Go `string` field tagged `json:",string"`: quoted twice.
    pub(crate) fn string_quoted(&mut self, name: &str, value: &str) -> &mut Self {
        self.key(name);
        let mut inner = String::new();
        push_quoted(&mut inner, value, true);
        push_quoted(&mut self.out, &inner, false);
        self
    }

    /// A Go integer field tagged `json:",string"`: the decimal in a string.
    pub(crate) fn int_quoted(&mut self, name: &str, value: i64) -> &mut Self {
        self.key(name);
        self.out.push('"');
        self.out.push_str(&value.to_string());
        self.out.push('"');
        self
    }

    /// A plain Go integer field.
    pub(crate) fn int(&mut self, name: &str, value: i64) -> &mut Self {
        self.key(name);
        self.out.push_str(&value.to_string());
        self
    }

    /// A Go `bool` field.
    pub(crate) fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// A Go `map[string]string` field: `null` when nil, keys sorted.
    pub(crate) fn map(
        &mut self,
        name: &str,
        value: Option<&BTreeMap<String, String>>,
    ) -> &mut Self {
        self.key(name);
        match value {
            None => self.out.push_str("null"),
            Some(m) => {
                self.out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    push_quoted(&mut self.out, k, true);
                    self.out.push(':');
                    push_quoted(&mut self.out, v, true);
                }
                self.out.push('}');
            }
        }
        self
    }

    /// A field whose value is already-encoded JSON.
    pub(crate) fn raw(&mut self, name: &str, json: &str) -> &mut Self {
        self.key(name);
        self.out.push_str(json);
        self
    }

    pub(crate) fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// Reads an integer that Go wrote with `json:",string"` (`"123"`); a bare
/// number or `null` is accepted too.
pub(crate) fn de_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(i),
        Some(IntOrString::Str(s)) if s.is_empty() => Ok(0),
        Some(IntOrString::Str(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Reads a string that Go wrote with `json:",string"` (`"\"lz4\""`); a singly
/// quoted string or `null` is accepted too.
pub(crate) fn de_quoted_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    if s.starts_with('"') {
        serde_json::from_str::<String>(&s).map_err(serde::de::Error::custom)
    } else {
        Ok(s)
    }
}

/// Reads a Go `string` that may be `null`.
pub(crate) fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut s = String::new();
        push_quoted(&mut s, "a<b>&\"\\\n\u{8}\u{2028}é", true);
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\u0008\u2028é""#);
        let mut o = GoObject::new();
        let j = o.string_quoted("C", "lz4").string_quoted("E", "").finish();
        assert_eq!(j, r#"{"C":"\"lz4\"","E":"\"\""}"#);
    }
}
