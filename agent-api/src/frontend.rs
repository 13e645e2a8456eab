//! The one frontend enum: how a published volume reaches a node's kernel.
//!
//! One spelling everywhere (agent identity, publish_context, controller
//! configuration, state store): `nvme-tcp` and `ublk`. The old configuration
//! spelling `nvme_tcp` is still read, with a deprecation warning.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The spelling of [`FrontendKind::NvmeTcp`] before there was one enum;
/// accepted on input with a warning.
pub const DEPRECATED_NVME_TCP: &str = "nvme_tcp";

/// How a node's kernel reaches a published volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrontendKind {
    /// Kernel NVMe/TCP initiator to a loopback NVMe-oF subsystem of the raid.
    NvmeTcp,
    /// ublk disk served by the local SPDK (`/dev/ublkbN`).
    Ublk,
}

impl FrontendKind {
    /// Every frontend, in the order a node prefers them.
    pub const ALL: [FrontendKind; 2] = [FrontendKind::NvmeTcp, FrontendKind::Ublk];

    /// The one spelling: `nvme-tcp` or `ublk`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrontendKind::NvmeTcp => "nvme-tcp",
            FrontendKind::Ublk => "ublk",
        }
    }
}

impl fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FrontendKind {
    type Err = String;

    /// Reads the one spelling, and the deprecated `nvme_tcp` with a warning.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(kind) = Self::ALL.into_iter().find(|k| k.as_str() == s) {
            return Ok(kind);
        }
        if s == DEPRECATED_NVME_TCP {
            tracing::warn!(
                "frontend spelling \"{DEPRECATED_NVME_TCP}\" is deprecated; write \"nvme-tcp\""
            );
            return Ok(FrontendKind::NvmeTcp);
        }
        Err(format!(
            "unknown frontend {s:?} (expected nvme-tcp or ublk)"
        ))
    }
}

impl<'de> Deserialize<'de> for FrontendKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_while<T>(f: impl FnOnce() -> T) -> (T, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn one_spelling_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&FrontendKind::NvmeTcp).unwrap(),
            "\"nvme-tcp\""
        );
        for kind in FrontendKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            let (back, log) = logged_while(|| serde_json::from_str::<FrontendKind>(&json));
            assert_eq!(back.unwrap(), kind);
            assert!(log.is_empty(), "no warning for {kind}: {log}");
            assert_eq!(kind.as_str().parse::<FrontendKind>(), Ok(kind));
        }
    }

    #[test]
    fn the_old_spelling_is_read_with_a_deprecation_warning() {
        let (kind, log) = logged_while(|| serde_json::from_str::<FrontendKind>("\"nvme_tcp\""));
        assert_eq!(kind.unwrap(), FrontendKind::NvmeTcp);
        assert!(log.contains("WARN"), "{log}");
        assert!(
            log.contains("deprecated") && log.contains("nvme-tcp"),
            "{log}"
        );
        let (kind, log) = logged_while(|| "nvme_tcp".parse::<FrontendKind>());
        assert_eq!(kind, Ok(FrontendKind::NvmeTcp));
        assert!(log.contains("deprecated"), "{log}");
    }

    #[test]
    fn unknown_spellings_are_refused_with_the_valid_ones() {
        let err = serde_json::from_str::<FrontendKind>("\"iscsi\"").unwrap_err();
        assert!(
            err.to_string().contains("expected nvme-tcp or ublk"),
            "{err}"
        );
        assert!("NVME-TCP".parse::<FrontendKind>().is_err());
    }
}
