//! The stack under test, composed from the single-machine mode's parts:
//! storage nodes (sim or real spdk_tgt), node-1's agent, the controller
//! (Identity + Controller on one socket) and the node service (on a socket
//! and a thread of its own, so its stage timings can be captured).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use csi_proto::controller_server::ControllerServer;
use csi_proto::identity_server::IdentityServer;
use csi_proto::node_server::NodeServer;
use shorthorn_controller::context::Context;
use shorthorn_controller::identity::{IdentityService, DRIVER_NAME};
use shorthorn_controller::naming::TOPOLOGY_NODE_KEY;
use shorthorn_controller::service::ControllerService;
use shorthorn_node::csi::{NodeService, NodeServiceConfig};
use shorthorn_node::frontend::FrontendKind;
use shorthorn_node::probe::{KernelFeatures, ProbeHost};
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::capture::{self, StageSplits};
use crate::local::agent::LocalAgent;
use crate::local::config::{node_name, LocalStore};
use crate::local::layout::Layout;
use crate::local::pidfile::PidFile;
use crate::local::storage_nodes::{Engine, StorageNode};
use crate::local::sweep::sweep;
use crate::local::up::{start_control_plane, ublk_device_pattern, usable_frontends, ControlPlane};

/// A running stack.
pub struct Stack {
    /// Its state directory.
    pub layout: Layout,
    /// The controller's context: node clients (call counters), store, fencing.
    pub ctx: Context,
    /// Identity + Controller socket.
    pub controller_socket: PathBuf,
    /// Node service socket (node-1).
    pub node_socket: PathBuf,
    /// What runs behind the storage nodes' sockets.
    pub engine: Engine,
    /// The frontend volumes published on node-1 use.
    pub frontend: FrontendKind,
    /// Whether this machine's kernel attaches published volumes (NodeStage
    /// and the writer run); without, only the controller-side operations
    /// run, publishing over NVMe/TCP, which needs no kernel on this side.
    pub kernel_attach: bool,
    /// Stage timings reported by the node service.
    pub splits: StageSplits,
    nodes: Vec<StorageNode>,
    stop_tx: watch::Sender<bool>,
    controller: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    agent: LocalAgent,
    node_thread: Option<std::thread::JoinHandle<()>>,
    _pid: PidFile,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Removes what an earlier bench left in `layout`: mounts, loop devices,
/// storage node disks, the store and the node state.
fn clean(layout: &Layout) -> anyhow::Result<()> {
    let stale = sweep(layout.root());
    if !stale.failures.is_empty() {
        anyhow::bail!(
            "cannot clean {} from an earlier run: {:?}",
            layout.root().display(),
            stale.failures
        );
    }
    for dir in [layout.root().join("nodes"), layout.node_state_dir()] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let store = layout.store_file();
    if store.exists() {
        std::fs::remove_file(&store).with_context(|| format!("removing {}", store.display()))?;
    }
    Ok(())
}

/// How published volumes reach node-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Through the kernel when it can (ublk, NVMe/TCP, or the sim's ublk
    /// stand-in); controller-side only when it cannot.
    Auto,
    /// Controller-side operations only, publishing over NVMe/TCP (for
    /// comparing the sim with real nodes on the same operations).
    ControllerOnly,
}

impl Stack {
    /// Starts `nodes` storage nodes of `disk_bytes` each, running `engine`,
    /// and everything above them.
    pub async fn start(
        root: &Path,
        nodes: usize,
        disk_bytes: u64,
        engine: Engine,
        attach: Attach,
    ) -> anyhow::Result<Self> {
        let layout = Layout::new(root);
        layout
            .create()
            .with_context(|| format!("creating {}", root.display()))?;
        let pid = PidFile::acquire(&layout.pid_file())?;
        clean(&layout)?;
        layout.create()?;

        let kernel = KernelFeatures::probe();
        let mut frontends = usable_frontends(&kernel, &engine);
        let kernel_attach = attach == Attach::Auto && !frontends.is_empty();
        if !kernel_attach {
            // The controller exports the raid over NVMe/TCP to node-1's
            // kernel host; nobody connects, so no kernel is needed here.
            frontends = vec![FrontendKind::NvmeTcp];
            tracing::info!(
                ?engine,
                "bench: controller-side operations only (no kernel initiator attaches volumes)"
            );
        }
        let frontend = *frontends
            .first()
            .ok_or_else(|| anyhow!("no frontend to publish volumes with"))?;
        let mut started = Vec::with_capacity(nodes);
        for i in 1..=nodes {
            started.push(StorageNode::start(&layout, &engine, i, disk_bytes).await?);
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let ControlPlane { agent, ctx, .. } = start_control_plane(
            &layout,
            nodes,
            &LocalStore::Embedded,
            &kernel,
            &frontends,
            stopped(stop_rx.clone()),
        )
        .await?;

        let controller_socket = layout.csi_socket();
        let listener = bind(&controller_socket)?;
        let controller = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IdentityServer::new(IdentityService::new(ctx.clone())))
                .add_service(ControllerServer::new(ControllerService::new(ctx.clone())))
                .serve_with_incoming_shutdown(
                    csi_proto::uds::incoming(listener),
                    stopped(stop_rx.clone()),
                ),
        );

        let splits = StageSplits::default();
        let node_socket = layout.root().join("node.sock");
        let node_thread =
            start_node_service(&layout, &engine, &node_socket, splits.clone(), stop_rx).await?;
        Ok(Self {
            layout,
            ctx,
            controller_socket,
            node_socket,
            engine,
            frontend,
            kernel_attach,
            splits,
            nodes: started,
            stop_tx,
            controller,
            agent,
            node_thread: Some(node_thread),
            _pid: pid,
        })
    }

    /// The node id of the node service (node-1).
    pub fn node_id(&self) -> String {
        node_name(1)
    }

    /// Where staging and target paths go.
    pub fn kubelet_dir(&self) -> PathBuf {
        self.layout.root().join("kubelet")
    }

    /// The storage nodes' names and JSON-RPC sockets, read directly (not
    /// through the controller's counted clients).
    pub fn node_sockets(&self) -> Vec<(String, PathBuf)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.socket.clone()))
            .collect()
    }

    /// Stops every server, unmounts what is left, stops the storage nodes.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        match (&mut self.controller).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "controller server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "controller server task failed"),
            Ok(Ok(())) => {}
        }
        if let Err(e) = (&mut self.agent.task).await {
            tracing::warn!(error = %e, "node agent task failed");
        }
        if let Some(thread) = self.node_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let early = sweep(self.layout.root());
        for mut node in std::mem::take(&mut self.nodes) {
            node.stop();
        }
        let late = sweep(self.layout.root());
        for f in early.failures.iter().chain(late.failures.iter()) {
            tracing::warn!(failure = %f, "cleanup incomplete");
        }
    }
}

fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if socket.exists() {
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale {}", socket.display()))?;
    }
    UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))
}

/// Runs node-1's node service on its own thread and runtime, with the
/// capturing subscriber as that thread's default; returns once it listens.
async fn start_node_service(
    layout: &Layout,
    engine: &Engine,
    socket: &Path,
    splits: StageSplits,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut config = NodeServiceConfig::new(DRIVER_NAME, node_name(1), layout.node_state_dir());
    config
        .topology
        .insert(TOPOLOGY_NODE_KEY.to_string(), node_name(1));
    config.kubelet_dir = layout.root().join("kubelet");
    config.ublk_devices = ublk_device_pattern(engine);
    let socket = socket.to_path_buf();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let thread = std::thread::Builder::new()
        .name("bench-node-service".into())
        .spawn(move || {
            let _default = tracing::subscriber::set_default(capture::subscriber(splits));
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("node service runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let prepared = NodeService::new(config)
                    .map_err(anyhow::Error::from)
                    .and_then(|svc| Ok((svc, bind(&socket)?)));
                let (service, listener) = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let served = tonic::transport::Server::builder()
                    .add_service(NodeServer::new(service))
                    .serve_with_incoming_shutdown(csi_proto::uds::incoming(listener), stopped(stop))
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "node service stopped with an error");
                }
            });
        })
        .context("starting the node service thread")?;
    ready_rx
        .await
        .map_err(|_| anyhow!("the node service thread ended before it listened"))??;
    Ok(thread)
}
