//! The one error type of the node's kernel layer.

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

/// Result alias used throughout the crate.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Everything that can go wrong while attaching, formatting, mounting or
/// quiescing a volume on this node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A required publish_context key is absent.
    #[error("publish_context is missing key `{key}`")]
    MissingContextKey {
        /// The missing key.
        key: &'static str,
    },

    /// A publish_context value could not be parsed or validated.
    #[error("publish_context key `{key}` has invalid value {value:?}: {reason}")]
    InvalidContextValue {
        /// The offending key.
        key: &'static str,
        /// The value as received.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A value destined for a kernel options string was rejected.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidOption {
        /// Name of the option (e.g. `nqn`).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An I/O operation on a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A system call (mount, ioctl, statvfs ...) failed.
    #[error("{op} {path}: {errno}")]
    Sys {
        /// The system call or operation.
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The errno returned.
        errno: Errno,
    },

    /// An external program could not be started.
    #[error("cannot run `{program}`: {source}")]
    CommandSpawn {
        /// The program name.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An external program exited unsuccessfully.
    #[error("`{command}` failed (exit {status:?}): {stderr}")]
    CommandFailed {
        /// The full command line.
        command: String,
        /// Exit code, `None` when killed by a signal.
        status: Option<i32>,
        /// Trimmed standard error.
        stderr: String,
    },

    /// A device did not show up within the allowed time.
    #[error("timed out after {waited:?} waiting for {what}")]
    DeviceTimeout {
        /// Description of what was awaited.
        what: String,
        /// How long was waited.
        waited: Duration,
    },

    /// A path expected to be a block device is something else.
    #[error("{path} is not a block device")]
    NotBlockDevice {
        /// The path.
        path: PathBuf,
    },

    /// The requested filesystem type is not supported.
    #[error("unsupported filesystem type {fs_type:?} (supported: ext4, xfs)")]
    UnsupportedFilesystem {
        /// The requested type.
        fs_type: String,
    },

    /// Refused to format a device that already carries a signature.
    #[error("refusing to format {device}: it already holds {signature}")]
    DeviceNotBlank {
        /// The device.
        device: PathBuf,
        /// Human readable description of what was found.
        signature: String,
    },

    /// A line of `/proc/self/mountinfo` could not be parsed.
    #[error("malformed mountinfo line {line:?}: {reason}")]
    MountInfoParse {
        /// The offending line.
        line: String,
        /// What was wrong with it.
        reason: &'static str,
    },

    /// The kernel's answer to a fabrics connect could not be understood.
    #[error("unexpected answer from /dev/nvme-fabrics: {response:?}")]
    FabricsResponse {
        /// The raw answer.
        response: String,
    },

    /// The volume cannot be quiesced in its current form.
    #[error("cannot quiesce volume {volume_id}: {reason}")]
    QuiesceUnsupported {
        /// The volume.
        volume_id: String,
        /// Why not.
        reason: String,
    },

    /// The volume cannot be held for a raid swap on this node.
    #[error("cannot hold volume {volume_id} for a raid swap: {reason}")]
    SwapUnsupported {
        /// The volume.
        volume_id: String,
        /// Why not.
        reason: String,
    },

    /// Suspend asked for a different target than the one already held.
    #[error("volume {volume_id} is already quiesced through {held}, not {requested}")]
    QuiesceConflict {
        /// The volume.
        volume_id: String,
        /// The target currently held.
        held: String,
        /// The target now requested.
        requested: String,
    },

    /// spdk_tgt refused, or did not answer, a call of an ANA fence.
    #[error("ANA fence of {nqn}: {method} failed: {source}")]
    AnaFenceSpdk {
        /// The volume subsystem.
        nqn: String,
        /// The SPDK method.
        method: &'static str,
        /// What spdk-client reported.
        #[source]
        source: spdk_client::SpdkError,
    },

    /// The drain barrier did not complete before the lease ran out.
    #[error("the I/O of {nqn} did not drain within its {lease:?} lease; the lease restores the optimized path")]
    AnaFenceDrainTimeout {
        /// The volume subsystem.
        nqn: String,
        /// The lease.
        lease: Duration,
    },

    /// A fence request named another listener than the lease holds.
    #[error("the ANA fence of {nqn} is held on listener {held}, not {requested}")]
    AnaFenceConflict {
        /// The volume subsystem.
        nqn: String,
        /// The listener the lease holds.
        held: String,
        /// The listener asked for.
        requested: String,
    },

    /// The agent has not yet restored the fences its previous run left.
    #[error("the node agent is still restoring ANA fences left by its previous run; retry")]
    AnaFenceStarting,

    /// A path that must be a mount point is not one.
    #[error("{path} is not a mount point")]
    NotMounted {
        /// The path.
        path: PathBuf,
    },

    /// A device-mapper name cannot be derived or is invalid.
    #[error("invalid device-mapper name {name:?}: {reason}")]
    InvalidDmName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A spec for one frontend was handed to another.
    #[error("{frontend} frontend cannot attach a {spec} spec")]
    WrongFrontend {
        /// The frontend asked.
        frontend: &'static str,
        /// The kind of the spec given.
        spec: &'static str,
    },

    /// A blocking task could not be joined.
    #[error("background task failed: {0}")]
    Task(String),

    /// The node agent or CSI node service was configured wrongly.
    #[error("invalid {what}: {reason}")]
    Config {
        /// What was being configured (e.g. `bearer token`).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A server could not bind, accept or serve.
    #[error("{what}: {reason}")]
    Serve {
        /// The server.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl From<agent_api::ContextError> for NodeError {
    fn from(e: agent_api::ContextError) -> Self {
        match e {
            agent_api::ContextError::MissingKey { key } => NodeError::MissingContextKey { key },
            agent_api::ContextError::InvalidValue { key, value, reason } => {
                NodeError::InvalidContextValue { key, value, reason }
            }
        }
    }
}

impl From<agent_api::InvalidNqn> for NodeError {
    fn from(e: agent_api::InvalidNqn) -> Self {
        NodeError::InvalidOption {
            field: "nqn",
            value: e.value,
            reason: e.reason,
        }
    }
}

impl NodeError {
    /// Builds an [`NodeError::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`NodeError::Sys`] for `op` on `path`.
    pub fn sys(op: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        NodeError::Sys {
            op,
            path: path.into(),
            errno,
        }
    }
}
