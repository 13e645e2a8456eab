//! Redaction marker used by the generated `Debug` impls of messages that
//! carry `csi_secret` fields (for example [`crate::CreateVolumeRequest`]).

use std::fmt;

/// Stand-in printed by `Debug` in place of a secret field's contents.
///
/// Shows at most the number of entries (or bytes), never keys or values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted(Option<usize>);

impl Redacted {
    /// Marker that also reports how many entries / bytes were hidden.
    pub const fn with_len(len: usize) -> Self {
        Self(Some(len))
    }

    /// Marker that reveals nothing about the hidden value.
    pub const fn opaque() -> Self {
        Self(None)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(len) => write!(f, "<redacted: {len}>"),
            None => f.write_str("<redacted>"),
        }
    }
}
