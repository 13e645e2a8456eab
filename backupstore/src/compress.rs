//! Block compression as Longhorn's `util.CompressData` / `DecompressAndVerify`:
//! `none`, `gzip` (RFC 1952) and `lz4` (the LZ4 frame format).

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// A block compression method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// gzip, Longhorn's legacy default.
    Gzip,
    /// LZ4 frame, Longhorn's default for new volumes.
    Lz4,
}

impl Compression {
    /// Parses the name used in `volume.cfg` and backup configs.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "lz4" => Ok(Compression::Lz4),
            other => Err(Error::Compression(other.to_string())),
        }
    }

    /// The name used in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
        }
    }

    /// Compresses one block.
    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut w =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                w.write_all(data)?;
                w.finish()
            }
            Compression::Lz4 => {
                let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
                w.write_all(data)?;
                w.finish().map_err(std::io::Error::other)
            }
        }
    }

    /// Decompresses one block.
    pub fn decompress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Compression::None => out.extend_from_slice(data),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
            }
            Compression::Lz4 => {
                lz4_flex::frame::FrameDecoder::new(data).read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Decompresses with this method, falling back to the other of gzip and
    /// lz4 when the data carries the other's magic, as Longhorn's
    /// `DecompressAndVerifyWithFallback` does.
    pub fn decompress_with_fallback(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self.decompress(data) {
            Ok(v) => Ok(v),
            Err(e) => {
                let alt = if data.starts_with(&[0x1f, 0x8b]) {
                    Some(Compression::Gzip)
                } else if data.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
                    Some(Compression::Lz4)
                } else {
                    None
                };
                match alt {
                    Some(a) if a != self => a.decompress(data),
                    _ => Err(e),
                }
            }
        }
    }
}
