//! Records of many volumes in one range read: the replicas and publications
//! of a page of volumes, for a listing that must not read the store once
//! per volume (issue #19: ListVolumes over the health monitor's records).
//!
//! Replica and publication keys are `<prefix><volume>/<node>`, so the
//! records of volumes whose ids sort together sit together. A scan starts
//! just before the first volume's records and stops at the first record of
//! a volume past the last one. That stop is exact when every id of the page
//! has the same length (volume ids are UUIDs): only then does key order
//! (`<id>/…`) follow id order. A page of ids of mixed lengths is read one
//! volume at a time instead.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::keys;
use super::records::{PublicationRecord, ReplicaRecord, SchemaVersioned};
use super::typed::{decode, Store};
use super::Result;

/// Entries read per range call; a scan repeats until it passes the page.
const BATCH: usize = 512;

impl Store {
    /// The replicas of each of `volume_ids` (a page from
    /// [`Store::list_volumes`]), keyed by volume id, each in node order. A
    /// volume without replicas maps to an empty list.
    pub async fn replicas_of_volumes(
        &self,
        volume_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<ReplicaRecord>>> {
        self.children_of_volumes(keys::REPLICAS, volume_ids, |r: &ReplicaRecord| &r.volume_id)
            .await
    }

    /// The publications of each of `volume_ids`, keyed by volume id, each in
    /// node order. A volume published nowhere maps to an empty list.
    pub async fn publications_of_volumes(
        &self,
        volume_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<PublicationRecord>>> {
        self.children_of_volumes(keys::PUBLICATIONS, volume_ids, |p: &PublicationRecord| {
            &p.volume_id
        })
        .await
    }

    async fn children_of_volumes<T: DeserializeOwned + SchemaVersioned>(
        &self,
        prefix: &str,
        volume_ids: &[String],
        volume_of: fn(&T) -> &str,
    ) -> Result<BTreeMap<String, Vec<T>>> {
        let mut out: BTreeMap<String, Vec<T>> = volume_ids
            .iter()
            .map(|id| (id.clone(), Vec::new()))
            .collect();
        let (Some(first), Some(last)) = (out.keys().next(), out.keys().next_back()) else {
            return Ok(out);
        };
        let (first, last) = (first.clone(), last.clone());
        if volume_ids.iter().any(|id| id.len() != first.len()) {
            for id in volume_ids {
                let of_volume = format!("{prefix}{}/", keys::segment(id));
                let records = self.list_records::<T>(&of_volume).await?;
                out.insert(id.clone(), records.into_iter().map(|v| v.record).collect());
            }
            return Ok(out);
        }
        // `<prefix><first>` sorts before every `<prefix><first>/<node>`.
        let mut after = format!("{prefix}{}", keys::segment(&first));
        loop {
            let entries = self
                .kv()
                .list_from(prefix, Some(&after), Some(BATCH))
                .await?;
            let full = entries.len() == BATCH;
            for (key, raw, _) in entries {
                let record: T = decode(&key, &raw)?;
                let volume = volume_of(&record);
                if volume > last.as_str() {
                    return Ok(out);
                }
                if let Some(list) = out.get_mut(volume) {
                    list.push(record);
                }
                after = key;
            }
            if !full {
                return Ok(out);
            }
        }
    }
}
