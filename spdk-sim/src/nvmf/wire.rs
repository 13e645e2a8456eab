//! The sim-to-sim fabric protocol (a stand-in for NVMe/TCP).
//!
//! Every frame is `u32 header_len | u32 data_len | header (JSON) | data`,
//! lengths big-endian. The header is a [`Header`]; `data` carries block
//! payloads (write data, read results) so that bulk bytes are never JSON.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

/// Largest header accepted, in bytes.
const MAX_HEADER: u32 = 1 << 20;
/// Largest data payload accepted, in bytes.
const MAX_DATA: u32 = 64 << 20;

/// ANA state of one (listener, ANA group) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnaState {
    /// I/O is served at full speed.
    Optimized,
    /// I/O is served, but another path is preferred.
    NonOptimized,
    /// I/O is refused with an ANA status.
    Inaccessible,
}

impl AnaState {
    /// SPDK's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AnaState::Optimized => "optimized",
            AnaState::NonOptimized => "non_optimized",
            AnaState::Inaccessible => "inaccessible",
        }
    }

    /// Parses SPDK's name for the state.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "optimized" => Some(AnaState::Optimized),
            "non_optimized" => Some(AnaState::NonOptimized),
            "inaccessible" => Some(AnaState::Inaccessible),
            _ => None,
        }
    }
}

/// One namespace as the target describes it to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Namespace id.
    pub nsid: u32,
    /// Namespace UUID (the bdev's UUID).
    pub uuid: Uuid,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Size in blocks.
    pub num_blocks: u64,
    /// ANA group of the namespace.
    pub anagrpid: u32,
    /// ANA state of that group on the listener this connection came through.
    pub ana_state: AnaState,
}

/// Identify-controller data returned on a successful connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    /// Controller id assigned by the target.
    pub cntlid: u16,
    /// Subsystem serial number.
    pub serial_number: String,
    /// Subsystem model number.
    pub model_number: String,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Whether the subsystem reports ANA.
    pub ana_reporting: bool,
    /// Active namespaces.
    pub namespaces: Vec<NamespaceInfo>,
}

/// Kind of a block I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoOp {
    /// Read `len` bytes at `offset`.
    Read,
    /// Write the frame's data at `offset`.
    Write,
    /// Make earlier writes durable.
    Flush,
    /// Deallocate `len` bytes at `offset`.
    Unmap,
}

/// Completion status of a block I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoStatus {
    /// Done; a read's data is in the frame's data.
    Ok,
    /// Failed with this negated errno.
    Errno(i32),
    /// Refused: the namespace's ANA group is inaccessible through this listener.
    AnaInaccessible,
}

/// The header of one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Header {
    /// Host to target, first frame: connect to a subsystem.
    Connect {
        /// Subsystem NQN.
        subnqn: String,
        /// Host NQN.
        hostnqn: String,
        /// Host identifier (one per initiator process, as SPDK's).
        #[serde(default)]
        hostid: Option<Uuid>,
    },
    /// Target to host: the connect succeeded.
    Connected {
        /// Controller and namespaces.
        ctrlr: ControllerInfo,
    },
    /// Target to host: the connect was refused (no such subsystem, host not allowed).
    Rejected {
        /// Negated errno.
        errno: i32,
    },
    /// Host to target: one block I/O.
    Io {
        /// Host-chosen tag echoed in the completion.
        tag: u64,
        /// Operation.
        op: IoOp,
        /// Namespace id.
        nsid: u32,
        /// Byte offset.
        offset: u64,
        /// Byte length (reads and unmaps).
        len: u64,
    },
    /// Target to host: completion of an I/O.
    IoDone {
        /// The I/O's tag.
        tag: u64,
        /// Outcome.
        status: IoStatus,
    },
    /// Target to host, unsolicited: the namespace list changed (resize, ANA change, removal).
    Namespaces {
        /// The current namespaces.
        namespaces: Vec<NamespaceInfo>,
    },
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    header: &Header,
    data: &[u8],
) -> std::io::Result<()> {
    let h = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    let hlen = u32::try_from(h.len()).map_err(std::io::Error::other)?;
    let dlen = u32::try_from(data.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(8 + h.len() + data.len());
    buf.extend_from_slice(&hlen.to_be_bytes());
    buf.extend_from_slice(&dlen.to_be_bytes());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(data);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(Header, Vec<u8>)>> {
    let mut lens = [0u8; 8];
    match r.read_exact(&mut lens).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let hlen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]);
    let dlen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]);
    if hlen > MAX_HEADER || dlen > MAX_DATA {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut h = vec![0u8; hlen as usize];
    r.read_exact(&mut h).await?;
    let mut data = vec![0u8; dlen as usize];
    r.read_exact(&mut data).await?;
    let header = serde_json::from_slice(&h)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((header, data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_with_payload() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let h = Header::Io {
            tag: 7,
            op: IoOp::Write,
            nsid: 1,
            offset: 4096,
            len: 3,
        };
        write_frame(&mut a, &h, b"abc").await.unwrap();
        drop(a);
        let (got, data) = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!(got, h);
        assert_eq!(data, b"abc");
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }
}
