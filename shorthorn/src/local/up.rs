//! `shorthorn local up`: storage nodes, store, controller and node service on
//! this machine, with every CSI service on one Unix socket.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use csi_proto::controller_server::ControllerServer;
use csi_proto::identity_server::IdentityServer;
use csi_proto::node_server::NodeServer;
use shorthorn_controller::admin;
use shorthorn_controller::config::ControllerConfig;
use shorthorn_controller::context::Context;
use shorthorn_controller::identity::{IdentityService, DRIVER_NAME};
use shorthorn_controller::leader::{self, LeaderGate};
use shorthorn_controller::naming::TOPOLOGY_NODE_KEY;
use shorthorn_controller::server::Endpoint;
use shorthorn_controller::service::ControllerService;
use shorthorn_node::csi::{NodeService, NodeServiceConfig, UblkDevicePattern};
use shorthorn_node::frontend::FrontendKind;
use shorthorn_node::probe::{KernelFeatures, ProbeHost};
use tokio::net::UnixListener;

use super::agent::{self, LocalAgent};
use super::config::{node_name, nvmf_port, render, AgentAccess, LocalStore};
use super::layout::Layout;
use super::pidfile::PidFile;
use super::storage_nodes::{Engine, StorageNode};
use super::sweep::sweep;
use crate::signals::shutdown_signal;

/// Settings of one `local up`.
#[derive(Debug, Clone)]
pub struct UpSettings {
    /// The state directory.
    pub layout: Layout,
    /// How many storage nodes.
    pub nodes: usize,
    /// Size of each node's backing file, one entry per node.
    pub disk_bytes: Vec<u64>,
    /// Where controller state goes.
    pub store: LocalStore,
}

/// Runs the local cluster until SIGINT or SIGTERM, then tears everything down.
pub async fn up(settings: UpSettings) -> anyhow::Result<()> {
    let layout = settings.layout.clone();
    layout
        .create()
        .with_context(|| format!("creating {}", layout.root().display()))?;
    let _pid = PidFile::acquire(&layout.pid_file())?;
    // A previous run that was killed may have left mounts or loop devices.
    let stale = sweep(layout.root());
    if !stale.unmounted.is_empty() || !stale.detached.is_empty() {
        tracing::warn!(
            ?stale,
            "cleaned up after an earlier run that did not stop cleanly"
        );
    }

    let kernel = KernelFeatures::probe();
    tracing::info!(features = %kernel.summary(), "kernel features");
    let engine = Engine::from_env();
    let frontends = usable_frontends(&kernel, &engine);
    if frontends.is_empty() {
        anyhow::bail!(
            "no usable frontend: this kernel has neither nvme-tcp (/dev/nvme-fabrics) nor ublk \
             (/dev/ublk-control){}; volumes could not be attached",
            if engine == Engine::Sim {
                ", nor /dev/loop-control and /dev/fuse for the sim's ublk stand-in"
            } else {
                ""
            }
        );
    }
    tracing::info!(
        ?frontends,
        "frontends for volumes published on this machine"
    );
    let mut nodes = Vec::with_capacity(settings.nodes);
    for (i, &disk_bytes) in (1..=settings.nodes).zip(&settings.disk_bytes) {
        let node = StorageNode::start(&layout, &engine, i, disk_bytes).await?;
        tracing::info!(node = %node.name, socket = %node.socket.display(), "storage node up");
        nodes.push(node);
    }

    let result = serve(&settings, &kernel, &frontends).await;

    // Teardown order matters: mounts first (they pin the sims' loop devices),
    // then the storage nodes (each removes its own ublk loop and FUSE mount),
    // then a final sweep for anything a crash left behind.
    let _ = std::fs::remove_file(layout.ready_file());
    let early = sweep(layout.root());
    for mut node in nodes {
        node.stop();
    }
    let late = sweep(layout.root());
    for f in early.failures.iter().chain(late.failures.iter()) {
        tracing::warn!(failure = %f, "cleanup incomplete");
    }
    result
}

/// The ublk device paths the node service accepts: the sim serves ublk
/// disks as loop devices where the kernel has no ublk; real spdk_tgt only
/// `/dev/ublkb<id>`.
pub fn ublk_device_pattern(engine: &Engine) -> UblkDevicePattern {
    match engine {
        Engine::Sim => UblkDevicePattern::UblkOrSimLoop,
        Engine::SpdkTgt(_) => UblkDevicePattern::Ublk,
    }
}

/// The frontends volumes can use here: what the kernel offers, plus ublk when
/// the storage nodes are sims, whose ublk stand-in needs only loop devices and FUSE.
pub fn usable_frontends(kernel: &KernelFeatures, engine: &Engine) -> Vec<FrontendKind> {
    let mut frontends = kernel.frontends();
    let sim_ublk = *engine == Engine::Sim
        && Path::new("/dev/loop-control").exists()
        && Path::new("/dev/fuse").exists();
    if sim_ublk && !frontends.contains(&FrontendKind::Ublk) {
        frontends.push(FrontendKind::Ublk);
    }
    frontends
}

/// node-1's agent plus a started controller, as every local stack needs them.
pub struct ControlPlane {
    /// node-1's agent; its task ends with the shutdown future given to [`start_control_plane`].
    pub agent: LocalAgent,
    /// The controller configuration written to the state directory.
    pub config: ControllerConfig,
    /// The started controller (store open, nodes registered, operations recovered).
    pub ctx: Context,
}

/// Starts node-1's agent, writes the controller configuration for `nodes`
/// storage nodes into the state directory and starts the controller on it.
/// The agent reports what volumes published here can use, including the
/// sim's ublk stand-in that the raw kernel probe cannot see.
pub async fn start_control_plane(
    layout: &Layout,
    nodes: usize,
    store: &LocalStore,
    kernel: &KernelFeatures,
    frontends: &[FrontendKind],
    agent_shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ControlPlane> {
    let mut reported = kernel.clone();
    reported.ublk = frontends.contains(&FrontendKind::Ublk);
    let agent = agent::start(
        layout,
        &node_name(1),
        nvmf_port(1),
        reported,
        agent_shutdown,
    )
    .await?;
    let access = AgentAccess {
        url: agent.url.clone(),
        token_file: agent.token_file.clone(),
    };
    let toml = render(layout, nodes, store, frontends, Some(&access));
    std::fs::write(layout.controller_config(), &toml)
        .with_context(|| format!("writing {}", layout.controller_config().display()))?;
    let config = ControllerConfig::from_toml(&toml)?;
    let ctx = shorthorn_controller::server::start(&config).await?;
    Ok(ControlPlane { agent, config, ctx })
}

async fn serve(
    settings: &UpSettings,
    kernel: &KernelFeatures,
    frontends: &[FrontendKind],
) -> anyhow::Result<()> {
    let layout = &settings.layout;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ControlPlane { agent, config, ctx } = start_control_plane(
        layout,
        settings.nodes,
        &settings.store,
        kernel,
        frontends,
        stopped(stop_rx.clone()),
    )
    .await?;

    let mut node_config =
        NodeServiceConfig::new(DRIVER_NAME, node_name(1), layout.node_state_dir());
    node_config
        .topology
        .insert(TOPOLOGY_NODE_KEY.to_string(), node_name(1));
    node_config.spdk_socket = Some(layout.node_socket(&node_name(1)));
    // Local staging and target paths (csi-sanity's, the bench's, the
    // demo's) all lie under the state directory: it is the kubelet root.
    node_config.kubelet_dir = layout.root().to_path_buf();
    node_config.ublk_devices = ublk_device_pattern(&Engine::from_env());
    let node_service = NodeService::new(node_config)?;

    let socket = layout.csi_socket();
    if socket.exists() {
        std::fs::remove_file(&socket)
            .with_context(|| format!("removing stale {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;

    // Reads on the socket stay open to its owner; `POST` (revert) needs
    // this token (`curl -H "Authorization: Bearer $(cat admin.token)"`).
    let admin_token_file = layout.root().join("admin.token");
    agent::write_token(&admin_token_file)?;
    let admin_listener = admin::bind(&Endpoint::Unix(layout.ctl_socket()))
        .await?
        .with_token(Some(admin::AdminToken::from_file(&admin_token_file)?));
    let admin = tokio::spawn(admin::serve_on(
        ctx.clone(),
        admin_listener,
        stopped(stop_rx.clone()),
    ));
    // Only while this controller leads (with --etcd another one may take over).
    let reconcile = tokio::spawn(leader::supervise(
        ctx.clone(),
        Duration::from_secs(config.reconcile_interval_secs.max(1)),
        config.health_interval(),
        stopped(stop_rx.clone()),
    ));
    let server = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(ctx.clone())))
        .add_service(LeaderGate::new(
            ControllerServer::new(ControllerService::new(ctx.clone())),
            ctx.leader.clone(),
        ))
        .add_service(NodeServer::new(node_service))
        .serve_with_incoming_shutdown(csi_proto::uds::incoming(listener), stopped(stop_rx));

    std::fs::write(
        layout.ready_file(),
        format!("unix://{}\n", socket.display()),
    )?;
    println!(
        "Shorthorn local cluster is up: {} storage nodes.",
        settings.nodes
    );
    println!("CSI endpoint: unix://{}", socket.display());
    println!(
        "Admin API: unix://{} (try `shorthorn ctl nodes`)",
        layout.ctl_socket().display()
    );
    println!("State directory: {}", layout.root().display());
    println!(
        "Stop with Ctrl-C or `shorthorn local down --state-dir {}`.",
        layout.root().display()
    );

    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });
    let served = server.await;
    let _ = stop_tx.send(true);
    let _ = reconcile.await;
    // Another controller on the same etcd may take over at once.
    ctx.leader.resign().await;
    match agent.task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "node agent stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "node agent task failed"),
        Ok(Ok(())) => {}
    }
    match admin.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin API stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "admin API task failed"),
        Ok(Ok(())) => {}
    }
    let _ = std::fs::remove_file(&socket);
    served.context("CSI server")?;
    Ok(())
}
