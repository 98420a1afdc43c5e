//! The etcd adapter's writes that guard operators' edits, against a real etcd: `/config` is
//! written only at the revision it was read at (PATCH /config's 409, edit-config's "aborted
//! due to concurrent changes"), and `remove` deletes one cluster's keys and no other's.

use pgwarden_testkit as support;

use std::time::Duration;

use pgwarden::dcs::{EtcdStore, KeyLayout};
use support::EtcdCluster;

async fn store(etcd: &EtcdCluster, scope: &str) -> EtcdStore {
    let layout = KeyLayout::new("/service", scope);
    EtcdStore::connect(
        &etcd.client_urls(),
        None,
        None,
        layout,
        Duration::from_secs(5),
    )
    .await
    .expect("connect to etcd")
}

#[test]
fn config_is_written_only_at_the_revision_it_was_read_at_and_remove_is_per_cluster() {
    let etcd = EtcdCluster::start(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let ours = store(&etcd, "cas-test").await;
        let theirs = store(&etcd, "cas-test-2").await;
        assert!(ours
            .write_config_if_absent(r#"{"ttl":30}"#.into())
            .await
            .expect("create /config"));
        assert!(theirs
            .write_config_if_absent(r#"{"ttl":30}"#.into())
            .await
            .expect("create the other cluster's /config"));
        let (_, read_at) = ours.read_config().await.expect("read").expect("present");
        // Someone else's edit lands first...
        assert!(ours
            .write_config(r#"{"ttl":20}"#.into(), Some(read_at))
            .await
            .expect("write"));
        // ...so ours, made from the older read, is refused and changes nothing.
        assert!(!ours
            .write_config(r#"{"ttl":10}"#.into(), Some(read_at))
            .await
            .expect("write"));
        let (now, read_again) = ours.read_config().await.expect("read").expect("present");
        assert_eq!(now["ttl"], 20);
        assert!(read_again > read_at);
        assert!(ours
            .write_config(r#"{"ttl":10}"#.into(), Some(read_again))
            .await
            .expect("write"));

        assert_eq!(ours.delete_cluster().await.expect("remove"), 1);
        assert_eq!(ours.read_config().await.expect("read"), None);
        let (other, _) = theirs.read_config().await.expect("read").expect("kept");
        assert_eq!(other["ttl"], 30, "the other cluster keeps its keys");
    });
}
