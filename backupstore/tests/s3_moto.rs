//! The round trip over S3 against a real S3-compatible server: moto_server,
//! started on a free loopback port (scripts/setup.sh installs it).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backupstore::{BackupRequest, Error, S3Credentials};
use common::*;

fn find_moto() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SHORTHORN_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("moto_server");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let dir = std::env::var("SHORTHORN_MOTO_DIR").unwrap_or_else(|_| "/opt/shorthorn/moto".into());
    let p = PathBuf::from(dir).join("bin/moto_server");
    p.is_file().then_some(p)
}

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(port: u16, req: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn start_moto(bin: &PathBuf) -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

#[tokio::test]
async fn round_trip_over_s3() {
    let Some(bin) = find_moto() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server not found in CI: scripts/setup.sh should have installed it"
        );
        println!(
            "SKIPPED: moto_server not found; run scripts/setup.sh (or set SHORTHORN_MOTO_SERVER)"
        );
        return;
    };
    let moto = start_moto(&bin);
    let port = moto.port;
    let resp = http(
        port,
        &format!("PUT /shorthorn-backups HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "creating the bucket: {resp}"
    );

    let creds = S3Credentials::from_secret(
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
            ("AWS_ENDPOINTS", &format!("http://127.0.0.1:{port}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    assert!(
        !format!("{creds:?}").contains("testing-secret"),
        "Debug leaks the secret"
    );
    let url = "s3://shorthorn-backups@us-east-1/cluster-a/";
    let store = backupstore::open(url, &creds)
        .unwrap()
        .with_lock_options(fast_locks());

    let nblocks = 8;
    let first: Image = [(0, 1), (2, 2), (5, 3)].into_iter().collect();
    let r1 = BackupRequest::new("pvc-s3", nblocks * BS, "backup-1", "snap-1");
    let o1 = store.create_backup(&r1, blocks_of(&first)).await.unwrap();
    assert_eq!(o1.blocks_uploaded, 3);
    assert_eq!(o1.url, format!("{url}?backup=backup-1&volume=pvc-s3"));

    let delta: Image = [(2, 9), (7, 9)].into_iter().collect();
    let mut r2 = BackupRequest::new("pvc-s3", nblocks * BS, "backup-2", "snap-2");
    r2.delta_base_snapshot = Some("snap-1".into());
    let o2 = store.create_backup(&r2, blocks_of(&delta)).await.unwrap();
    assert_eq!((o2.blocks_in, o2.blocks_uploaded), (2, 2));
    println!(
        "s3 upload counts: full {} blocks / {} bytes, incremental {} blocks / {} bytes",
        o1.blocks_uploaded, o1.bytes_uploaded, o2.blocks_uploaded, o2.bytes_uploaded
    );

    // The objects are where Longhorn puts them, under the URL's path.
    let vdir = backupstore::format::volume_dir("pvc-s3");
    let listing = http(
        port,
        &format!("GET /shorthorn-backups?list-type=2&prefix=cluster-a/{vdir}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    assert!(
        listing.contains(&format!("cluster-a/{vdir}/volume.cfg")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("cluster-a/{vdir}/backups/backup_backup-2.cfg")),
        "{listing}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut all = first.clone();
    all.extend(delta.iter());
    for (b, img) in [("backup-1", &first), ("backup-2", &all)] {
        let f = tmp.path().join(format!("{b}.img"));
        store.restore_to_file("pvc-s3", b, &f).await.unwrap();
        assert_file_is(&f, img, nblocks);
    }

    store.delete_backup("pvc-s3", "backup-1").await.unwrap();
    let left = store.list_blocks("pvc-s3").await.unwrap();
    let want: std::collections::BTreeSet<String> = all
        .iter()
        .map(|(&i, &s)| backupstore::format::checksum(&block(s, i)))
        .collect();
    assert_eq!(left, want, "only backup-2's blocks remain");
    let f = tmp.path().join("after-delete.img");
    store
        .restore_to_file("pvc-s3", "backup-2", &f)
        .await
        .unwrap();
    assert_file_is(&f, &all, nblocks);
    assert!(matches!(
        store.restore_to_file("pvc-s3", "backup-1", &f).await,
        Err(Error::NotFound(_))
    ));
    drop(moto);
}
