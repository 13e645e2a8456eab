//! One behavioural suite run against every `KvStore` backend.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_api::FrontendKind;

use shorthorn_controller::store::{
    EmbeddedStore, EtcdConfig, EtcdStore, Expect, KvStore, OperationKind, OperationRecord, Page,
    PublicationRecord, ReplicaHealth, ReplicaRecord, ReplicaSnapshot, Revision, SnapshotRecord,
    Store, StoreError, TxnOp, VolumeRecord, SCHEMA_VERSION,
};

/// A backend plus whatever must stay alive while it is used.
struct Fixture {
    kv: Arc<dyn KvStore>,
    _keep: Box<dyn Any>,
}

async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path().join("state.redb"))
        .await
        .expect("open embedded store");
    Fixture {
        kv: Arc::new(store),
        _keep: Box::new(dir),
    }
}

async fn etcd() -> Fixture {
    let server = testkit::EtcdServer::start().expect("start etcd");
    let store = EtcdStore::new(EtcdConfig {
        endpoints: vec![server.endpoint()],
        request_timeout: Duration::from_secs(10),
        ..EtcdConfig::default()
    })
    .expect("etcd client");
    Fixture {
        kv: Arc::new(store),
        _keep: Box::new(server),
    }
}

fn is_conflict_on<T: std::fmt::Debug>(result: &Result<T, StoreError>, key: &str) -> bool {
    matches!(result, Err(StoreError::Conflict { key: k }) if k == key)
}

fn volume(id: &str, name: &str) -> VolumeRecord {
    VolumeRecord {
        version: SCHEMA_VERSION,
        id: id.into(),
        name: name.into(),
        capacity_bytes: 1 << 30,
        parameters: BTreeMap::from([("replicas".into(), "2".into())]),
        replica_count: 2,
        content_source: None,
        accessible_topology: vec![BTreeMap::from([("zone".into(), "a".into())])],
        epoch: 0,
        unclean: None,
    }
}

fn replica(volume_id: &str, node: &str) -> ReplicaRecord {
    ReplicaRecord {
        version: SCHEMA_VERSION,
        volume_id: volume_id.into(),
        node: node.into(),
        lvstore: "lvs0".into(),
        lvol_uuid: format!("{volume_id}-{node}-uuid"),
        health: ReplicaHealth::Healthy,
        generation: 1,
        reason: None,
        since: None,
    }
}

fn put(key: &str, value: &[u8], expect: Expect) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.to_vec(),
        expect,
    }
}

fn del(key: &str, expect: Expect) -> TxnOp {
    TxnOp::Delete {
        key: key.into(),
        expect,
    }
}

async fn cas_rejects_existing_and_stale(kv: Arc<dyn KvStore>) {
    let r1 = kv
        .put("k", b"one".to_vec(), Expect::Absent)
        .await
        .expect("first put");
    let again = kv.put("k", b"dup".to_vec(), Expect::Absent).await;
    assert!(
        is_conflict_on(&again, "k"),
        "Absent on existing key: {again:?}"
    );

    let r2 = kv
        .put("k", b"two".to_vec(), Expect::Revision(r1))
        .await
        .expect("CAS at current revision");
    assert!(r2 > r1, "revision must grow: {r1:?} -> {r2:?}");
    let stale = kv.put("k", b"three".to_vec(), Expect::Revision(r1)).await;
    assert!(is_conflict_on(&stale, "k"), "stale revision: {stale:?}");
    assert_eq!(kv.get("k").await.expect("get"), Some((b"two".to_vec(), r2)));

    let stale_delete = kv.delete("k", Expect::Revision(r1)).await;
    assert!(
        is_conflict_on(&stale_delete, "k"),
        "stale delete: {stale_delete:?}"
    );
    assert!(
        kv.get("k").await.expect("get").is_some(),
        "stale delete deleted"
    );
    assert!(kv.delete("k", Expect::Revision(r2)).await.expect("delete"));
    assert_eq!(kv.get("k").await.expect("get"), None);
    assert!(!kv.delete("k", Expect::Any).await.expect("delete absent"));

    let on_absent = kv.put("k", b"x".to_vec(), Expect::Revision(r2)).await;
    assert!(
        is_conflict_on(&on_absent, "k"),
        "revision on absent key: {on_absent:?}"
    );
}

async fn txn_is_all_or_nothing(kv: Arc<dyn KvStore>) {
    let rx = kv.put("x", b"1".to_vec(), Expect::Any).await;
    let rx = rx.expect("put x");
    let bogus = Expect::Revision(Revision(rx.0 + 1000));
    let failing = vec![
        put("y", b"2", Expect::Absent),
        del("x", Expect::Any),
        put("z", b"3", bogus),
    ];
    let result = kv.txn(failing).await;
    assert!(is_conflict_on(&result, "z"), "failing txn: {result:?}");
    assert_eq!(
        kv.get("y").await.expect("get y"),
        None,
        "failed txn wrote y"
    );
    assert_eq!(
        kv.get("x").await.expect("get x"),
        Some((b"1".to_vec(), rx)),
        "failed txn deleted x"
    );

    let ok = vec![
        put("y", b"2", Expect::Absent),
        del("x", Expect::Revision(rx)),
        put("z", b"3", Expect::Absent),
    ];
    let rev = kv.txn(ok).await.expect("txn");
    assert_eq!(kv.get("x").await.expect("get x"), None);
    assert_eq!(
        kv.get("y").await.expect("get y"),
        Some((b"2".to_vec(), rev))
    );
    assert_eq!(
        kv.get("z").await.expect("get z"),
        Some((b"3".to_vec(), rev))
    );

    let duplicate = vec![put("d", b"1", Expect::Any), del("d", Expect::Any)];
    assert!(matches!(
        kv.txn(duplicate).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(kv.get("d").await.expect("get d"), None);
}

fn keys(entries: Vec<(String, Vec<u8>, Revision)>) -> Vec<String> {
    entries
        .into_iter()
        .map(|(k, v, _)| {
            assert_eq!(k.as_bytes(), v.as_slice(), "value belongs to its key");
            k
        })
        .collect()
}

async fn listing_is_sorted_and_prefix_isolated(kv: Arc<dyn KvStore>) {
    for key in ["a/2", "a/1", "ab/x", "a/10", "a", "b/1", "a/"] {
        kv.put(key, key.as_bytes().to_vec(), Expect::Any)
            .await
            .expect("put");
    }
    assert_eq!(
        keys(kv.list("a/").await.expect("list")),
        ["a/", "a/1", "a/10", "a/2"]
    );
    assert_eq!(keys(kv.list("b/").await.expect("list")), ["b/1"]);
    assert!(kv.list("c/").await.expect("list").is_empty());
    let page = kv.list_from("a/", Some("a/1"), Some(2)).await;
    assert_eq!(keys(page.expect("list_from")), ["a/10", "a/2"]);
    let none = kv.list_from("a/", None, Some(0)).await.expect("limit 0");
    assert!(none.is_empty(), "a zero limit returns nothing: {none:?}");
}

fn ids(page: &Page<VolumeRecord>) -> Vec<String> {
    page.items.iter().map(|v| v.record.id.clone()).collect()
}

async fn volumes_paginate_in_id_order(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    for id in ["v3", "v1", "v5", "v2", "v4"] {
        store
            .create_volume(&volume(id, &format!("pvc-{id}")), &[])
            .await
            .expect("create");
    }
    let first = store.list_volumes(None, 2).await.expect("page 1");
    assert_eq!(ids(&first), ["v1", "v2"]);
    let second = store.list_volumes(first.next.as_deref(), 2).await;
    let second = second.expect("page 2");
    assert_eq!(ids(&second), ["v3", "v4"]);
    let third = store.list_volumes(second.next.as_deref(), 2).await;
    let third = third.expect("page 3");
    assert_eq!(ids(&third), ["v5"]);
    assert_eq!(third.next, None, "last page has no continuation");
    let all = store.list_volumes(None, 0).await.expect("all");
    assert_eq!(ids(&all), ["v1", "v2", "v3", "v4", "v5"]);
}

async fn concurrent_creates_with_one_name_have_one_winner(kv: Arc<dyn KvStore>) {
    let (a, b) = (Store::new(kv.clone()), Store::new(kv));
    let va = volume("vol-a", "pvc-same");
    let vb = volume("vol-b", "pvc-same");
    let ra_replicas = [replica("vol-a", "n1")];
    let rb_replicas = [replica("vol-b", "n1")];
    let (ra, rb) = tokio::join!(
        a.create_volume(&va, &ra_replicas),
        b.create_volume(&vb, &rb_replicas),
    );
    let (winner, loser) = match (&ra, &rb) {
        (Ok(_), Err(StoreError::Conflict { .. })) => ("vol-a", "vol-b"),
        (Err(StoreError::Conflict { .. }), Ok(_)) => ("vol-b", "vol-a"),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    let by_name = a.get_volume_by_name("pvc-same").await.expect("by name");
    assert_eq!(by_name.expect("present").record.id, winner);
    assert_eq!(a.get_volume(loser).await.expect("get loser"), None);
    assert!(a.list_replicas(loser).await.expect("replicas").is_empty());
    assert_eq!(a.list_replicas(winner).await.expect("replicas").len(), 1);
}

async fn volume_lifecycle_keeps_related_records_together(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    let vol = volume("vol/1", "pvc-1");
    let replicas = [replica("vol/1", "n1"), replica("vol/1", "n2")];
    store.create_volume(&vol, &replicas).await.expect("create");
    // An id that merely shares a prefix must not be swept up with "vol/1".
    store
        .create_volume(&volume("vol/10", "pvc-10"), &[replica("vol/10", "n1")])
        .await
        .expect("create neighbour");

    let current = store.get_volume("vol/1").await.expect("get");
    let current = current.expect("present");
    assert_eq!(current.record, vol);
    let mut grown = vol.clone();
    grown.capacity_bytes *= 2;
    let rev = store.update_volume(&grown, current.revision).await;
    let rev = rev.expect("update");
    let stale = store.update_volume(&vol, current.revision).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "stale update: {stale:?}"
    );
    let reread = store.get_volume("vol/1").await.expect("get");
    let reread = reread.expect("present");
    assert_eq!(
        (reread.record.capacity_bytes, reread.revision),
        (2 << 30, rev)
    );

    let publication = PublicationRecord {
        version: SCHEMA_VERSION,
        volume_id: "vol/1".into(),
        node: "n3".into(),
        frontend: FrontendKind::NvmeTcp,
        publish_context: BTreeMap::from([("nqn".into(), "nqn.x".into())]),
        readonly: false,
        members: Vec::new(),
        epoch: 0,
    };
    store
        .put_publication(&publication, Expect::Absent)
        .await
        .expect("publish");
    let pubs = store.list_publications("vol/1").await.expect("pubs");
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].record, publication);
    let nodes: Vec<_> = store
        .list_replicas("vol/1")
        .await
        .expect("replicas")
        .into_iter()
        .map(|r| r.record.node)
        .collect();
    assert_eq!(nodes, ["n1", "n2"]);

    assert!(store.delete_volume("vol/1").await.expect("delete"));
    assert!(!store.delete_volume("vol/1").await.expect("delete again"));
    assert_eq!(store.get_volume_by_name("pvc-1").await.expect("name"), None);
    assert!(store.list_replicas("vol/1").await.expect("reps").is_empty());
    assert!(store
        .list_publications("vol/1")
        .await
        .expect("pubs")
        .is_empty());
    let neighbour = store.list_replicas("vol/10").await.expect("replicas");
    assert_eq!(neighbour.len(), 1, "neighbour's replicas survive");
    store
        .create_volume(&volume("vol/2", "pvc-1"), &[])
        .await
        .expect("the name is free again");
}

fn snapshot(id: &str, name: &str, source: &str) -> SnapshotRecord {
    SnapshotRecord {
        version: SCHEMA_VERSION,
        id: id.into(),
        name: name.into(),
        source_volume_id: source.into(),
        created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        size_bytes: 4096,
        replica_snapshots: vec![ReplicaSnapshot {
            node: "n1".into(),
            lvstore: "lvs0".into(),
            lvol_uuid: format!("{id}-uuid"),
        }],
        deleted: false,
    }
}

async fn snapshot_ids_of(store: &Store, volume_id: &str) -> Vec<String> {
    store
        .list_snapshots_of_volume(volume_id)
        .await
        .expect("by source")
        .into_iter()
        .map(|s| s.record.id)
        .collect()
}

async fn snapshots_round_trip(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    for (id, name, source) in [
        ("s1", "snap-1", "v1"),
        ("s2", "snap-2", "v2"),
        ("s3", "snap-3", "v1"),
    ] {
        store
            .create_snapshot(&snapshot(id, name, source))
            .await
            .expect("create snapshot");
    }
    let dup = store.create_snapshot(&snapshot("s4", "snap-1", "v1")).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict { .. })),
        "duplicate name: {dup:?}"
    );
    assert_eq!(store.get_snapshot("s4").await.expect("get"), None);
    let by_name = store.get_snapshot_by_name("snap-2").await.expect("name");
    assert_eq!(
        by_name.expect("present").record,
        snapshot("s2", "snap-2", "v2")
    );
    assert_eq!(snapshot_ids_of(&store, "v1").await, ["s1", "s3"]);
    let page = store.list_snapshots(None, 2).await.expect("page");
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next.as_deref(), Some("s2"));

    assert!(store.delete_snapshot("s1").await.expect("delete"));
    assert_eq!(
        store.get_snapshot_by_name("snap-1").await.expect("name"),
        None
    );
    assert_eq!(snapshot_ids_of(&store, "v1").await, ["s3"]);
}

async fn operation_journal_round_trip(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    let op = OperationRecord {
        version: SCHEMA_VERSION,
        id: "op-1".into(),
        kind: OperationKind::CreateVolume,
        volume_id: "v1".into(),
        step: "allocate".into(),
        payload: serde_json::json!({"nodes": ["n1"]}),
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
    };
    let rev = store.begin_operation(&op).await.expect("begin");
    let twice = store.begin_operation(&op).await;
    assert!(
        matches!(twice, Err(StoreError::Conflict { .. })),
        "{twice:?}"
    );
    let payload = serde_json::json!({"exported": ["n1"]});
    let rev2 = store
        .update_operation_step("op-1", "export", payload.clone(), rev)
        .await
        .expect("step");
    let stale = store
        .update_operation_step("op-1", "assemble", serde_json::Value::Null, rev)
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "stale step: {stale:?}"
    );
    let pending = store.list_pending_operations().await.expect("pending");
    assert_eq!(pending.len(), 1);
    let entry = &pending[0];
    assert_eq!(entry.revision, rev2);
    assert_eq!(entry.record.step, "export");
    assert_eq!(entry.record.payload, payload);
    assert!(store.finish_operation("op-1").await.expect("finish"));
    assert!(store
        .list_pending_operations()
        .await
        .expect("list")
        .is_empty());
}

async fn unreadable_records_are_reported_not_misread(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv.clone());
    kv.put("volumes/junk", b"{not json".to_vec(), Expect::Any)
        .await
        .expect("put");
    let junk = store.get_volume("junk").await;
    assert!(matches!(junk, Err(StoreError::Corrupt { .. })), "{junk:?}");

    let mut future = serde_json::to_value(volume("new", "pvc-new")).expect("json");
    future["version"] = serde_json::json!(SCHEMA_VERSION + 1);
    kv.put("volumes/new", future.to_string().into_bytes(), Expect::Any)
        .await
        .expect("put");
    let newer = store.get_volume("new").await;
    assert!(
        matches!(newer, Err(StoreError::UnsupportedSchema { found, .. }) if found == SCHEMA_VERSION + 1),
        "{newer:?}"
    );
    kv.health().await.expect("healthy");
}

async fn cluster_identity_is_made_once_and_shared(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv.clone());
    assert_eq!(store.get_cluster().await.expect("get"), None);
    let other = Store::new(kv);
    let (a, b) = tokio::join!(store.ensure_cluster(), other.ensure_cluster());
    let (a, b) = (a.expect("ensure"), b.expect("ensure"));
    assert_eq!(a.id, b.id, "two controllers racing agree on one identity");
    let again = store.ensure_cluster().await.expect("ensure again");
    assert_eq!(again, a, "an existing identity is never replaced");
    let stored = store.get_cluster().await.expect("get").expect("present");
    assert_eq!(stored.record, a);
}

async fn deleting_a_volume_leaves_a_tombstone_until_it_is_dropped(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    let before = SystemTime::now();
    store
        .create_volume(&volume("v1", "pvc-1"), &[replica("v1", "n1")])
        .await
        .expect("create");
    assert_eq!(store.get_tombstone("v1").await.expect("get"), None);
    assert!(store.delete_volume("v1").await.expect("delete"));
    let t = store
        .get_tombstone("v1")
        .await
        .expect("get")
        .expect("tombstone");
    assert_eq!(t.record.volume_id, "v1");
    assert!(t.record.deleted_at >= before, "{:?}", t.record);
    store
        .put_tombstone("v2")
        .await
        .expect("tombstone a rolled-back create");
    let listed: Vec<String> = store
        .list_tombstones()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.record.volume_id)
        .collect();
    assert_eq!(listed, ["v1", "v2"]);
    let first = store
        .get_tombstone("v2")
        .await
        .expect("get")
        .expect("present");
    store.put_tombstone("v2").await.expect("again");
    let second = store
        .get_tombstone("v2")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        first, second,
        "a second tombstone keeps the first deletion time"
    );

    // A volume created with a tombstoned id clears the tombstone.
    store
        .create_volume(&volume("v2", "pvc-2"), &[])
        .await
        .expect("create v2");
    assert_eq!(store.get_tombstone("v2").await.expect("get"), None);

    let stale = Expect::Revision(Revision(t.revision.0 - 1));
    let refused = store.delete_tombstone("v1", stale).await;
    assert!(is_conflict_on(&refused, "tombstones/v1"), "{refused:?}");
    let dropped = store
        .delete_tombstone("v1", Expect::Revision(t.revision))
        .await;
    assert!(dropped.expect("drop"));
    assert!(store.list_tombstones().await.expect("list").is_empty());
}

/// Every replica and publication of each volume of `ids`, one volume at a
/// time: what a page's range reads must equal.
async fn children_one_by_one(
    store: &Store,
    ids: &[String],
) -> (
    BTreeMap<String, Vec<ReplicaRecord>>,
    BTreeMap<String, Vec<PublicationRecord>>,
) {
    let (mut replicas, mut publications) = (BTreeMap::new(), BTreeMap::new());
    for id in ids {
        let r = store.list_replicas(id).await.expect("replicas");
        replicas.insert(id.clone(), r.into_iter().map(|v| v.record).collect());
        let p = store.list_publications(id).await.expect("publications");
        publications.insert(id.clone(), p.into_iter().map(|v| v.record).collect());
    }
    (replicas, publications)
}

async fn a_page_reads_its_volumes_replicas_and_publications_at_once(kv: Arc<dyn KvStore>) {
    let store = Store::new(kv);
    // 300 volumes of two replicas: the page's range read crosses batches.
    for i in 0..300 {
        let id = format!("vol-{i:04}");
        let replicas = [replica(&id, "n1"), replica(&id, "n2")];
        let v = volume(&id, &format!("pvc-{i}"));
        store.create_volume(&v, &replicas).await.expect("create");
        if i % 3 == 0 {
            let publication = PublicationRecord {
                version: SCHEMA_VERSION,
                volume_id: id.clone(),
                node: "n1".into(),
                frontend: FrontendKind::NvmeTcp,
                publish_context: BTreeMap::new(),
                readonly: false,
                members: vec!["n1".into(), "n2".into()],
                epoch: 1,
            };
            let put = store.put_publication(&publication, Expect::Absent).await;
            put.expect("publish");
        }
    }
    let first = store.list_volumes(None, 10).await.expect("page 1");
    let middle = store.list_volumes(first.next.as_deref(), 280).await;
    let middle = ids(&middle.expect("page 2"));
    let replicas = store.replicas_of_volumes(&middle).await.expect("replicas");
    let publications = store.publications_of_volumes(&middle).await;
    let publications = publications.expect("publications");
    let (want_replicas, want_publications) = children_one_by_one(&store, &middle).await;
    assert_eq!(replicas.len(), 280, "one entry per volume of the page");
    assert_eq!(
        replicas, want_replicas,
        "no replica missed, none from outside the page"
    );
    assert_eq!(publications, want_publications);
    assert!(replicas.values().all(|r| r.len() == 2));
    assert_eq!(publications.values().filter(|p| !p.is_empty()).count(), 93);

    // Ids of mixed lengths ("v1/" sorts after "v10/"): still exact.
    for id in ["v1", "v10", "v1-a", "v2"] {
        let v = volume(id, &format!("pvc-{id}"));
        let created = store.create_volume(&v, &[replica(id, "n1")]).await;
        created.expect("create");
    }
    let mixed: Vec<String> = ["v1", "v1-a", "v10"].map(String::from).to_vec();
    let replicas = store.replicas_of_volumes(&mixed).await.expect("replicas");
    assert_eq!(replicas, children_one_by_one(&store, &mixed).await.0);
    assert!(store
        .replicas_of_volumes(&[])
        .await
        .expect("none")
        .is_empty());
}

macro_rules! suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::$backend().await;
                    super::$case(fixture.kv.clone()).await;
                }
            )*
        }
    };
}

macro_rules! conformance {
    ($($backend:ident),*) => {$(
        suite!($backend:
            cas_rejects_existing_and_stale,
            txn_is_all_or_nothing,
            listing_is_sorted_and_prefix_isolated,
            volumes_paginate_in_id_order,
            concurrent_creates_with_one_name_have_one_winner,
            volume_lifecycle_keeps_related_records_together,
            snapshots_round_trip,
            operation_journal_round_trip,
            unreadable_records_are_reported_not_misread,
            cluster_identity_is_made_once_and_shared,
            deleting_a_volume_leaves_a_tombstone_until_it_is_dropped,
            a_page_reads_its_volumes_replicas_and_publications_at_once,
        );
    )*};
}

conformance!(embedded, etcd);
