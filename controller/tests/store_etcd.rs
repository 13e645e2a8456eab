//! etcd backend behaviour that only a network store has: failover between
//! endpoints, errors naming the endpoint, key namespacing.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use shorthorn_controller::store::{EtcdConfig, EtcdStore, Expect, KvStore, StoreError};

/// A loopback URL nothing listens on.
fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

fn config(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        prefix: prefix.into(),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn fails_over_past_a_dead_endpoint() {
    let server = testkit::EtcdServer::start().expect("start etcd");
    let store =
        EtcdStore::new(config(vec![dead_endpoint(), server.endpoint()], "/t/")).expect("client");
    store
        .health()
        .await
        .expect("healthy through second endpoint");
    let rev = store
        .put("k", b"v".to_vec(), Expect::Absent)
        .await
        .expect("write through second endpoint");
    assert_eq!(
        store.get("k").await.expect("get"),
        Some((b"v".to_vec(), rev))
    );
}

#[tokio::test]
async fn unreachable_cluster_is_unavailable_and_named() {
    let dead = dead_endpoint();
    let store = EtcdStore::new(config(vec![dead.clone()], "/t/")).expect("client");
    let result = store.get("k").await;
    assert!(
        matches!(&result, Err(StoreError::Unavailable { endpoint, .. }) if *endpoint == dead),
        "{result:?}"
    );
    assert!(matches!(
        store.health().await,
        Err(StoreError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let server = testkit::EtcdServer::start().expect("start etcd");
    let a: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(config(vec![server.endpoint()], "/a/")).expect("client"));
    let b: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(config(vec![server.endpoint()], "/b/")).expect("client"));
    a.put("volumes/x", b"from a".to_vec(), Expect::Absent)
        .await
        .expect("put a");
    b.put("volumes/x", b"from b".to_vec(), Expect::Absent)
        .await
        .expect("same key under another prefix is independent");
    let listed = a.list("").await.expect("list a");
    let keys: Vec<_> = listed
        .iter()
        .map(|(k, v, _)| (k.as_str(), v.as_slice()))
        .collect();
    assert_eq!(keys, [("volumes/x", b"from a".as_slice())]);
}
