//! Key layout of the typed store. Every identifier is escaped so that it is
//! exactly one path segment: `%` becomes `%25` and `/` becomes `%2F`.

/// Prefix of volume records: `volumes/<id>`.
pub(crate) const VOLUMES: &str = "volumes/";
/// Prefix of the volume name index: `volume-names/<name>` -> id.
pub(crate) const VOLUME_NAMES: &str = "volume-names/";
/// Prefix of replica records: `replicas/<volume>/<node>`.
pub(crate) const REPLICAS: &str = "replicas/";
/// Prefix of publication records: `publications/<volume>/<node>`.
pub(crate) const PUBLICATIONS: &str = "publications/";
/// Prefix of snapshot records: `snapshots/<id>`.
pub(crate) const SNAPSHOTS: &str = "snapshots/";
/// Prefix of the snapshot name index: `snapshot-names/<name>` -> id.
pub(crate) const SNAPSHOT_NAMES: &str = "snapshot-names/";
/// Prefix of the source index: `volume-snapshots/<volume>/<snapshot>` -> id.
pub(crate) const VOLUME_SNAPSHOTS: &str = "volume-snapshots/";
/// Prefix of the operation journal: `ops/<op-id>`.
pub(crate) const OPS: &str = "ops/";
/// The cluster record (one key): the identity stamped on the nodes.
pub(crate) const CLUSTER: &str = "cluster";
/// Prefix of tombstones of deleted volumes: `tombstones/<volume>`.
pub(crate) const TOMBSTONES: &str = "tombstones/";
/// The leader record (etcd only): the holder's identity, attached to its
/// lease. Every write of the leader is conditional on its create revision.
pub(crate) const LEADER: &str = "leader";

/// Escapes `raw` into a single key segment.
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn volume(id: &str) -> String {
    format!("{VOLUMES}{}", segment(id))
}

pub(crate) fn volume_name(name: &str) -> String {
    format!("{VOLUME_NAMES}{}", segment(name))
}

pub(crate) fn replicas_of(volume_id: &str) -> String {
    format!("{REPLICAS}{}/", segment(volume_id))
}

pub(crate) fn replica(volume_id: &str, node: &str) -> String {
    format!("{}{}", replicas_of(volume_id), segment(node))
}

pub(crate) fn publications_of(volume_id: &str) -> String {
    format!("{PUBLICATIONS}{}/", segment(volume_id))
}

pub(crate) fn publication(volume_id: &str, node: &str) -> String {
    format!("{}{}", publications_of(volume_id), segment(node))
}

pub(crate) fn snapshot(id: &str) -> String {
    format!("{SNAPSHOTS}{}", segment(id))
}

pub(crate) fn snapshot_name(name: &str) -> String {
    format!("{SNAPSHOT_NAMES}{}", segment(name))
}

pub(crate) fn snapshots_of(volume_id: &str) -> String {
    format!("{VOLUME_SNAPSHOTS}{}/", segment(volume_id))
}

pub(crate) fn volume_snapshot(volume_id: &str, snapshot_id: &str) -> String {
    format!("{}{}", snapshots_of(volume_id), segment(snapshot_id))
}

pub(crate) fn operation(id: &str) -> String {
    format!("{OPS}{}", segment(id))
}

pub(crate) fn tombstone(volume_id: &str) -> String {
    format!("{TOMBSTONES}{}", segment(volume_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_in_ids_cannot_escape_their_segment() {
        assert_eq!(replica("a/b", "n"), "replicas/a%2Fb/n");
        assert!(!replica("a/b", "n").starts_with(&replicas_of("a")));
        assert_ne!(segment("a%2Fb"), segment("a/b"));
    }
}
