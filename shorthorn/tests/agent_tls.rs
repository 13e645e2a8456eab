//! The controller reaches node agents over HTTPS only when their certificate
//! checks out: signed by the configured CA for the expected name, or the
//! pinned one. An agent with any other certificate is refused before the
//! bearer token is sent.

// The controller's test harness; these tests also run a real node agent,
// so they live in the crate that links both.
mod node_agent;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::{Path, PathBuf};

use agent_api::client::{AgentClient, AgentError, ClientTls, ServerTrust};
use agent_api::KernelFeatures;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use shorthorn_node::agent::{serve_agent, AgentConfig, TlsFiles};
use support::*;
use testkit::nodes::{StorageNode, TestCluster};

const TOKEN: &str = "s3cret-token-for-tls-tests";

/// A test CA that signs certificates for `localhost` and 127.0.0.1.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA cert").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Writes the CA and a leaf certificate + key it signed under `dir`.
    fn write(&self, dir: &Path, prefix: &str) -> (PathBuf, TlsFiles) {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let ca = dir.join(format!("{prefix}-ca.crt"));
        let files = TlsFiles {
            cert: dir.join(format!("{prefix}.crt")),
            key: dir.join(format!("{prefix}.key")),
        };
        std::fs::write(&ca, &self.pem).expect("write CA");
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        (ca, files)
    }
}

/// A real node agent serving HTTPS with `tls` in front of `node`'s SPDK.
struct Agent {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<shorthorn_node::Result<()>>,
}

impl Agent {
    fn start(node: &StorageNode, dir: &Path, name: &str, token_file: &Path, tls: TlsFiles) -> Self {
        let std_listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let state_dir = dir.join(format!("{name}-state"));
        let config = AgentConfig {
            nvmf_port: node.nvmf_port,
            nvme_etc_dir: dir.join("no-etc-nvme"),
            tls: Some(tls),
            disks: vec![node.aio_file.clone()],
            kernel: Some(KernelFeatures {
                ublk: true,
                ..KernelFeatures::default()
            }),
            ..AgentConfig::new(name, token_file.into(), node.rpc_socket.clone(), state_dir)
        };
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_agent(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            port,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("join").expect("agent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_drives_an_https_agent_and_refuses_a_wrong_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let started = tokio::task::spawn_blocking(|| TestCluster::start(1)).await;
    let cluster = started.expect("join").expect("start node");
    let node = cluster.node(0);
    let trusted = TestCa::new("shorthorn test CA");
    let (ca_file, good_files) = trusted.write(dir.path(), "good");
    let stranger = TestCa::new("some other CA");
    let (stranger_ca, bad_files) = stranger.write(dir.path(), "bad");
    let good = Agent::start(
        node,
        dir.path(),
        "worker-a",
        &token_file,
        good_files.clone(),
    );
    let bad = Agent::start(node, dir.path(), "worker-b", &token_file, bad_files);

    // DNS discovery finds both agents on 127.0.0.1, one port each: run it
    // once per agent, as a controller for that port would.
    let controller = |port: u16| {
        format!(
            "reconcile_interval_secs = 3600\n\
             [store]\nembedded = {:?}\n\
             [discovery]\nagent_dns = \"localhost\"\nagent_port = {port}\nagent_token_file = {:?}\n\
             base_bdev = {{ aio_file = {:?} }}\n\
             [agent_tls]\nca_file = {:?}\n",
            dir.path()
                .join(format!("state-{port}.redb"))
                .display()
                .to_string(),
            token_file.display().to_string(),
            node.aio_file.display().to_string(),
            ca_file.display().to_string(),
        )
    };

    // The trusted agent: identity, bootstrap and a volume's whole life over HTTPS.
    let config = shorthorn_controller::config::ControllerConfig::from_toml(&controller(good.port))
        .expect("config");
    let ctx = shorthorn_controller::server::start(&config)
        .await
        .expect("controller start");
    let handle = ctx
        .nodes
        .get("worker-a")
        .expect("the HTTPS agent was discovered");
    assert!(
        matches!(&handle.config.endpoint,
            shorthorn_controller::config::NodeEndpoint::Agent { url, .. } if url.starts_with("https://")),
        "{:?}",
        handle.config.endpoint
    );
    let status = handle.status();
    assert!(
        status.online && status.bootstrapped,
        "SPDK through the HTTPS agent: {status:?}"
    );
    use csi_proto::controller_server::Controller;
    use tonic::Request;
    let service = shorthorn_controller::service::ControllerService::new(ctx.clone());
    let volume = service
        .create_volume(Request::new(create_req("pvc-tls", 16 * MIB, Some(1))))
        .await
        .expect("create through the HTTPS agent")
        .into_inner()
        .volume
        .expect("volume");
    let sim = spdk_client::SpdkClient::unix(node.rpc_socket.clone());
    let lvols = data_lvols(&sim).await;
    assert_eq!(lvols.len(), 1, "the replica lvol exists on the node");
    service
        .delete_volume(Request::new(delete_req(&volume.volume_id)))
        .await
        .expect("delete through the HTTPS agent");

    // The agent whose certificate another CA signed is never registered.
    let config = shorthorn_controller::config::ControllerConfig::from_toml(&controller(bad.port))
        .expect("config");
    let refused = shorthorn_controller::server::start(&config)
        .await
        .expect("controller start");
    assert!(
        refused.nodes.get("worker-b").is_err(),
        "an agent with a certificate the CA did not sign must not be used"
    );

    // The same refusal, as the client reports it: a typed TLS error.
    let tls = ClientTls::new(&ServerTrust::CaFile(ca_file.clone())).expect("tls");
    let err = AgentClient::new(&bad.url(), TOKEN, Some(tls.clone()))
        .expect("client")
        .identity()
        .await
        .expect_err("wrong certificate");
    assert!(matches!(err, AgentError::Tls { .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    // Trusting the other CA instead admits it (the refusal was the certificate).
    let other = ClientTls::new(&ServerTrust::CaFile(stranger_ca)).expect("tls");
    let id = AgentClient::new(&bad.url(), TOKEN, Some(other))
        .expect("client")
        .identity()
        .await
        .expect("identity with its own CA");
    assert_eq!(id.node_name, "worker-b");
    // A certificate for another name is refused too.
    let misnamed = tls.with_server_name("agent.example").expect("name");
    let err = AgentClient::new(&good.url(), TOKEN, Some(misnamed))
        .expect("client")
        .identity()
        .await
        .expect_err("certificate for another name");
    assert!(matches!(err, AgentError::Tls { .. }), "{err}");
    // Pinning: exactly the agent's certificate is accepted, any other is not.
    let pinned =
        ClientTls::new(&ServerTrust::PinnedCertFile(good_files.cert.clone())).expect("pin");
    let id = AgentClient::new(&good.url(), TOKEN, Some(pinned.clone()))
        .expect("client")
        .identity()
        .await
        .expect("pinned certificate");
    assert_eq!(id.node_name, "worker-a");
    let err = AgentClient::new(&bad.url(), TOKEN, Some(pinned))
        .expect("client")
        .identity()
        .await
        .expect_err("not the pinned certificate");
    assert!(matches!(err, AgentError::Tls { .. }), "{err}");
    // Plain http to a remote host is refused before anything is sent.
    let err = AgentClient::new("http://192.0.2.7:9810", TOKEN, None).expect_err("in clear");
    assert!(matches!(err, AgentError::Endpoint { .. }), "{err}");

    drop((ctx, refused));
    good.stop().await;
    bad.stop().await;
    assert!(data_lvols(&sim).await.is_empty(), "nothing left behind");
    drop(cluster);
}
