//! `nvmf_subsystem_set_ns_ana_group` is a drain barrier: it returns only
//! after the namespace's in-flight I/O has completed.

mod net_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use net_common::*;
use serde_json::{json, Value};
use spdk_sim::bdev::{Bdev, BdevKind, IoResult};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// A bdev whose writes wait for a permit, so a test can hold I/O in flight.
struct GatedBdev {
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
    uuid: Uuid,
}

#[async_trait]
impl Bdev for GatedBdev {
    fn name(&self) -> String {
        "gated".into()
    }
    fn aliases(&self) -> Vec<String> {
        vec![]
    }
    fn uuid(&self) -> Uuid {
        self.uuid
    }
    fn kind(&self) -> BdevKind {
        BdevKind::Malloc
    }
    fn product_name(&self) -> String {
        "Malloc disk".into()
    }
    fn block_size(&self) -> u32 {
        4096
    }
    fn num_blocks(&self) -> u64 {
        256
    }
    fn driver_specific(&self) -> Value {
        json!({})
    }
    fn supported_io_types(&self) -> Value {
        json!({})
    }
    async fn read(&self, _offset: u64, len: u64) -> IoResult<Vec<u8>> {
        Ok(vec![0; len as usize])
    }
    async fn write(&self, _offset: u64, _data: &[u8]) -> IoResult<()> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.expect("gate closed");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_ns_ana_group_waits_for_in_flight_io() {
    let a = TestSim::new();
    let b = TestSim::new();
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    b.sim
        .bdevs
        .lock()
        .unwrap()
        .register(Arc::new(GatedBdev {
            gate: gate.clone(),
            entered: entered.clone(),
            uuid: Uuid::new_v4(),
        }))
        .unwrap();
    let port = free_port();
    let nqn = "nqn.2016-06.io.spdk:barrier";
    b.ok("nvmf_create_transport", json!({"trtype": "TCP"}))
        .await;
    b.export_with(
        json!({"nqn": nqn, "allow_any_host": true, "ana_reporting": true}),
        "gated",
        port,
    )
    .await;
    a.ok("bdev_nvme_attach_controller", attach_params("g", nqn, port))
        .await;
    let nv = a.bdev("gn1");

    let write = tokio::spawn(async move { nv.write(0, &[1u8; 4096]).await });
    // Wait until the write is inside the target's bdev (holding the drain guard).
    wait_until("write in flight", || {
        let entered = entered.clone();
        async move { entered.load(Ordering::SeqCst) == 1 }
    })
    .await;

    let barrier = tokio::spawn({
        let sim = b.sim.clone();
        async move {
            spdk_sim::methods::dispatch(
                &sim,
                "nvmf_subsystem_set_ns_ana_group",
                Some(&json!({"nqn": nqn, "nsid": 1, "anagrpid": 2})),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !barrier.is_finished(),
        "ANA group changed while I/O was in flight"
    );
    assert!(!write.is_finished());
    gate.add_permits(1);
    write.await.unwrap().unwrap();
    assert_eq!(barrier.await.unwrap().unwrap(), json!(true));
    let subs = b.ok("nvmf_get_subsystems", json!({"nqn": nqn})).await;
    assert_eq!(subs[0]["namespaces"][0]["anagrpid"], 2);
}
