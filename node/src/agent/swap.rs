//! `POST /swap/check`, `/swap/suspend` and `/swap/resume`: the dm-linear
//! hold around the raid swap of a thin rebuild of a published volume
//! (docs/rebuild.md). The volume must be staged on this node over a
//! dm-linear device and attached over NVMe/TCP; the new kernel device is
//! found by the namespace UUID (the volume id) in the volume's subsystem.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_api::swap::{
    check_deadline, check_volume_id, SwapCheckRequest, SwapCheckResponse, SwapResumeRequest,
    SwapResumeResponse, SwapSuspendRequest, SwapSuspendResponse, MAX_REATTACH_WAIT,
};
use async_trait::async_trait;
use http::StatusCode;
use tracing::{warn, Instrument};

use super::response::{error, json, AgentResponse};
use crate::csi::StagingStore;
use crate::error::{NodeError, Result};
use crate::frontend::nvme_tcp::sysfs;
use crate::frontend::{AttachSpec, AttachedDevice, FrontendKind};
use crate::swap::{SwapBackend, SwapHolds, SwapVolume};

/// How long an expired lease looks for the volume's device before it
/// resumes onto the old one.
pub const EXPIRY_REATTACH_WAIT: Duration = Duration::from_secs(2);
/// Poll interval while looking for a device.
const POLL: Duration = Duration::from_millis(50);
/// How often a controller rescan is asked for while looking.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// The swap routes over [`SwapHolds`].
pub struct SwapApi {
    holds: SwapHolds,
}

impl fmt::Debug for SwapApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwapApi")
    }
}

impl SwapApi {
    /// Over the kernel: staging records under `state_dir`, dmsetup, sysfs.
    pub fn kernel(state_dir: &std::path::Path) -> Result<Self> {
        let runner: Arc<dyn crate::command::CommandRunner> = Arc::new(crate::command::SystemRunner);
        let backend = KernelSwap {
            store: StagingStore::open(state_dir)?,
            sysfs: PathBuf::from("/sys"),
            dev_dir: PathBuf::from("/dev"),
        };
        Ok(Self::new(SwapHolds::new(
            crate::dm::DmLinear::new(runner),
            Arc::new(backend),
            EXPIRY_REATTACH_WAIT,
        )))
    }

    /// Over `holds`.
    pub fn new(holds: SwapHolds) -> Self {
        SwapApi { holds }
    }

    pub(super) async fn check(&self, body: &[u8]) -> AgentResponse {
        let req: SwapCheckRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        if let Err(why) = check_volume_id(&req.volume_id) {
            return error(StatusCode::BAD_REQUEST, &why);
        }
        match self.holds.check(&req.volume_id).await {
            Ok((v, held)) => json(
                StatusCode::OK,
                &SwapCheckResponse {
                    volume_id: req.volume_id,
                    dm_name: v.dm_name,
                    device: v.device.path.display().to_string(),
                    frontend: v.device.kind,
                    held,
                },
            ),
            Err(e) => failure("check", e),
        }
    }

    pub(super) async fn suspend(&self, body: &[u8]) -> AgentResponse {
        let req: SwapSuspendRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        if let Err(why) = check_volume_id(&req.volume_id) {
            return error(StatusCode::BAD_REQUEST, &why);
        }
        let deadline = match check_deadline(req.deadline_ms) {
            Ok(d) => d,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        let span = tracing::info_span!("swap", volume_id = %req.volume_id);
        match self
            .holds
            .suspend(&req.volume_id, deadline)
            .instrument(span)
            .await
        {
            Ok(already_held) => json(
                StatusCode::OK,
                &SwapSuspendResponse {
                    volume_id: req.volume_id,
                    already_held,
                },
            ),
            Err(e) => failure("suspend", e),
        }
    }

    pub(super) async fn resume(&self, body: &[u8]) -> AgentResponse {
        let req: SwapResumeRequest = match parse(body) {
            Ok(r) => r,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        if let Err(why) = check_volume_id(&req.volume_id) {
            return error(StatusCode::BAD_REQUEST, &why);
        }
        let wait = Duration::from_millis(req.reattach_wait_ms);
        if req.reattach && (wait.is_zero() || wait > MAX_REATTACH_WAIT) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "reattach_wait_ms must be between 1 and {} with reattach",
                    MAX_REATTACH_WAIT.as_millis()
                ),
            );
        }
        let span = tracing::info_span!("swap", volume_id = %req.volume_id);
        match self
            .holds
            .resume(&req.volume_id, req.reattach.then_some(wait))
            .instrument(span)
            .await
        {
            Ok(rep) => json(
                StatusCode::OK,
                &SwapResumeResponse {
                    volume_id: req.volume_id,
                    held_ms: rep
                        .held_for
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                        .unwrap_or(0),
                    expired: rep.held_for.is_none(),
                    device: rep.device.path.display().to_string(),
                    reloaded: rep.reloaded,
                },
            ),
            Err(e) => failure("resume", e),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

fn failure(op: &str, e: NodeError) -> AgentResponse {
    warn!(error = %e, "swap {op} failed");
    let status = match e {
        NodeError::SwapUnsupported { .. } => StatusCode::CONFLICT,
        NodeError::DeviceTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// Staged volumes from the CSI node's records; devices from sysfs.
struct KernelSwap {
    store: StagingStore,
    sysfs: PathBuf,
    dev_dir: PathBuf,
}

impl KernelSwap {
    fn unsupported(volume_id: &str, reason: &str) -> NodeError {
        NodeError::SwapUnsupported {
            volume_id: volume_id.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn rescan(&self, t: &agent_api::NvmeTcpTarget) {
        for c in sysfs::find_controllers(&self.sysfs, t) {
            let attr = self
                .sysfs
                .join("class/nvme")
                .join(&c.name)
                .join("rescan_controller");
            if let Err(e) = std::fs::write(&attr, "1") {
                tracing::debug!(controller = %c.name, error = %e, "rescan request failed");
            }
        }
    }
}

#[async_trait]
impl SwapBackend for KernelSwap {
    fn resolve(&self, volume_id: &str) -> Result<SwapVolume> {
        let rec = self
            .store
            .load(volume_id)?
            .ok_or_else(|| Self::unsupported(volume_id, "the volume is not staged on this node"))?;
        let dm_name = rec.dm_name.clone().ok_or_else(|| {
            Self::unsupported(
                volume_id,
                "it is staged without a dm-linear layer (the node's dm layer is off)",
            )
        })?;
        if rec.device.kind != FrontendKind::NvmeTcp {
            return Err(Self::unsupported(
                volume_id,
                "only NVMe/TCP volumes are swapped (ublk: the old device stays open under dm and its delete was not shown to finish)",
            ));
        }
        Ok(SwapVolume {
            volume_id: volume_id.to_owned(),
            dm_name,
            device: rec.device,
        })
    }

    async fn find_device(
        &self,
        volume: &SwapVolume,
        wait: Duration,
        require_new: bool,
    ) -> Result<Option<AttachedDevice>> {
        let rec = self.store.load(&volume.volume_id)?.ok_or_else(|| {
            Self::unsupported(&volume.volume_id, "the volume is not staged on this node")
        })?;
        let AttachSpec::NvmeTcp(t) = &rec.spec else {
            return Err(Self::unsupported(
                &volume.volume_id,
                "its attachment is not NVMe/TCP",
            ));
        };
        let old = volume
            .device
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let start = Instant::now();
        let mut rescanned: Option<Instant> = None;
        loop {
            if rescanned.is_none_or(|r| r.elapsed() >= RESCAN_EVERY) {
                self.rescan(t);
                rescanned = Some(Instant::now());
            }
            let found = sysfs::find_namespaces(&self.sysfs, &t.subnqn, &t.ns_uuid);
            let device = |ns: &sysfs::Namespace| {
                let path = self.dev_dir.join(&ns.name);
                path.exists().then(|| AttachedDevice {
                    kind: FrontendKind::NvmeTcp,
                    path,
                    size_bytes: ns.size_bytes,
                    controllers: sysfs::find_controllers(&self.sysfs, t)
                        .into_iter()
                        .map(|c| c.name)
                        .collect(),
                })
            };
            if let Some(d) = found.iter().filter(|n| n.name != old).find_map(device) {
                return Ok(Some(d));
            }
            if !require_new {
                if let Some(d) = found.iter().filter(|n| n.name == old).find_map(device) {
                    return Ok(Some(d));
                }
            }
            if start.elapsed() >= wait {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn record_device(&self, volume_id: &str, device: &AttachedDevice) -> Result<()> {
        if let Some(mut rec) = self.store.load(volume_id)? {
            rec.device = device.clone();
            self.store.save(&rec)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::ScriptedRunner;
    use crate::dm::DmLinear;
    use http_body_util::BodyExt;

    struct Staged;

    #[async_trait]
    impl SwapBackend for Staged {
        fn resolve(&self, volume_id: &str) -> Result<SwapVolume> {
            if volume_id != "v1" {
                return Err(KernelSwap::unsupported(
                    volume_id,
                    "the volume is not staged on this node",
                ));
            }
            Ok(SwapVolume {
                volume_id: "v1".into(),
                dm_name: "shorthorn-v1".into(),
                device: AttachedDevice {
                    kind: FrontendKind::NvmeTcp,
                    path: "/dev/nvme0n1".into(),
                    size_bytes: 4096,
                    controllers: vec![],
                },
            })
        }
        async fn find_device(
            &self,
            _: &SwapVolume,
            _: Duration,
            _: bool,
        ) -> Result<Option<AttachedDevice>> {
            Ok(None)
        }
        fn record_device(&self, _: &str, _: &AttachedDevice) -> Result<()> {
            Ok(())
        }
    }

    fn api() -> (SwapApi, Arc<ScriptedRunner>) {
        let r = Arc::new(ScriptedRunner::default());
        let holds = SwapHolds::new(
            DmLinear::new(r.clone()),
            Arc::new(Staged),
            Duration::from_millis(10),
        );
        (SwapApi::new(holds), r)
    }

    async fn answer(resp: AgentResponse) -> (StatusCode, String) {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const NQN: &str = "nqn.2025-11.io.shorthorn:volume:v1";
    const UUID: &str = "0b5c7f7e-3c0e-4d4f-9a43-6a2f7c1d9e10";

    /// A fabricated sysfs and /dev with controller nvme0 of the volume's
    /// subsystem, and a staging record of `v1` on `/dev/nvme0n1`.
    struct Tree {
        dir: tempfile::TempDir,
        backend: KernelSwap,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = StagingStore::open(&dir.path().join("state")).unwrap();
            let t = agent_api::NvmeTcpTarget {
                traddr: "127.0.0.1".parse().unwrap(),
                trsvcid: 4420,
                subnqn: NQN.into(),
                ns_uuid: UUID.parse().unwrap(),
                hostnqn: "nqn.2014-08.org.nvmexpress:uuid:h".into(),
                hostid: uuid::Uuid::nil(),
                ctrl_loss_tmo: -1,
                reconnect_delay: 1,
                keep_alive_tmo: 5,
            };
            store
                .save(&crate::csi::StagedVolume {
                    volume_id: "v1".into(),
                    staging_path: dir.path().join("staging"),
                    spec: AttachSpec::NvmeTcp(t),
                    device: AttachedDevice {
                        kind: FrontendKind::NvmeTcp,
                        path: dir.path().join("dev/nvme0n1"),
                        size_bytes: 4096,
                        controllers: vec!["nvme0".into()],
                    },
                    dm_name: Some("shorthorn-v1".into()),
                    access: crate::csi::AccessKind::Block,
                    read_only: false,
                    publications: Default::default(),
                })
                .unwrap();
            let backend = KernelSwap {
                store,
                sysfs: dir.path().join("sys"),
                dev_dir: dir.path().join("dev"),
            };
            let tree = Tree { dir, backend };
            let c = "sys/class/nvme/nvme0";
            for (attr, value) in [
                ("subsysnqn", NQN),
                ("transport", "tcp"),
                ("address", "traddr=127.0.0.1,trsvcid=4420"),
                ("state", "live"),
                ("rescan_controller", ""),
            ] {
                tree.write(&format!("{c}/{attr}"), value);
            }
            tree.namespace("nvme0n1");
            tree
        }

        fn write(&self, rel: &str, content: &str) {
            let p = self.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{content}\n")).unwrap();
        }

        fn namespace(&self, name: &str) {
            self.write(&format!("sys/class/nvme/nvme0/{name}/uuid"), UUID);
            self.write(&format!("sys/class/nvme/nvme0/{name}/size"), "16");
            self.write(&format!("dev/{name}"), "");
        }

        fn remove(&self, name: &str) {
            std::fs::remove_dir_all(self.dir.path().join(format!("sys/class/nvme/nvme0/{name}")))
                .unwrap();
            std::fs::remove_file(self.dir.path().join(format!("dev/{name}"))).unwrap();
        }
    }

    #[tokio::test]
    async fn a_reattach_takes_the_re_added_namespace_never_the_removed_one() {
        let tree = Tree::new();
        let vol = tree.backend.resolve("v1").unwrap();
        assert_eq!(vol.dm_name, "shorthorn-v1");
        let wait = Duration::from_millis(150);
        // Only the old namespace: not a new device; without require_new it counts.
        assert_eq!(
            tree.backend.find_device(&vol, wait, true).await.unwrap(),
            None
        );
        let same = tree.backend.find_device(&vol, wait, false).await.unwrap();
        assert_eq!(same.map(|d| d.path), Some(vol.device.path.clone()));
        // The kernel still lists the removed namespace beside the re-added one.
        tree.namespace("nvme0n2");
        let found = tree
            .backend
            .find_device(&vol, wait, true)
            .await
            .unwrap()
            .unwrap();
        assert!(found.path.ends_with("nvme0n2"), "{found:?}");
        assert_eq!(found.size_bytes, 16 * 512);
        assert_eq!(found.controllers, vec!["nvme0".to_string()]);
        // The record follows the table.
        tree.backend.record_device("v1", &found).unwrap();
        assert_eq!(tree.backend.resolve("v1").unwrap().device, found);
        // Both gone: nothing within the wait.
        tree.remove("nvme0n1");
        tree.remove("nvme0n2");
        let vol = tree.backend.resolve("v1").unwrap();
        assert_eq!(
            tree.backend.find_device(&vol, wait, false).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn parameters_are_checked_before_dmsetup_runs() {
        let (api, r) = api();
        for (body, want) in [
            (r#"{"volume_id":"../etc","deadline_ms":1000}"#, "volume_id"),
            (r#"{"volume_id":"","deadline_ms":1000}"#, "volume_id"),
            (r#"{"volume_id":"v1","deadline_ms":0}"#, "deadline_ms"),
            (r#"{"volume_id":"v1","deadline_ms":60001}"#, "deadline_ms"),
            (r#"{"volume_id":"v1"}"#, "bad request body"),
        ] {
            let (status, text) = answer(api.suspend(body.as_bytes()).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(text.contains(want), "{body}: {text}");
        }
        let (status, text) = answer(
            api.resume(br#"{"volume_id":"v1","reattach":true,"reattach_wait_ms":0}"#)
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(r.calls().is_empty(), "{:?}", r.calls());
    }

    #[tokio::test]
    async fn an_unstaged_volume_is_a_conflict_and_a_staged_one_is_held_and_resumed() {
        let (api, r) = api();
        let (status, text) = answer(api.check(br#"{"volume_id":"v2"}"#).await).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(text.contains("not staged"), "{text}");
        let (status, text) = answer(api.check(br#"{"volume_id":"v1"}"#).await).await;
        assert_eq!(status, StatusCode::OK);
        let check: SwapCheckResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(check.dm_name, "shorthorn-v1");
        assert!(!check.held);
        let (status, _) = answer(
            api.suspend(br#"{"volume_id":"v1","deadline_ms":5000}"#)
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // A reattach that finds no device: 504, and the hold stays.
        let (status, text) = answer(
            api.resume(br#"{"volume_id":"v1","reattach":true,"reattach_wait_ms":10}"#)
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
        let (_, text) = answer(api.check(br#"{"volume_id":"v1"}"#).await).await;
        assert!(
            serde_json::from_str::<SwapCheckResponse>(&text)
                .unwrap()
                .held
        );
        let (status, text) = answer(api.resume(br#"{"volume_id":"v1"}"#).await).await;
        assert_eq!(status, StatusCode::OK);
        let rep: SwapResumeResponse = serde_json::from_str(&text).unwrap();
        assert!(!rep.expired && !rep.reloaded);
        assert_eq!(rep.device, "/dev/nvme0n1");
        assert_eq!(
            r.calls(),
            vec![
                "dmsetup suspend shorthorn-v1",
                "dmsetup resume shorthorn-v1"
            ]
        );
    }
}
