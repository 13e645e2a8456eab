//! `ctl nodes|volumes|volume|snapshots|rebuilds`: fetch from the admin API,
//! print a table (or the API's JSON as-is with `--json`); `ctl
//! set-replicas`: change a volume's replica count through it.

use std::time::{SystemTime, UNIX_EPOCH};

use shorthorn_controller::admin::{
    NodeView, RebuildView, ReplicaChangeView, SetReplicasRequest, SnapshotView, VolumeView,
};
use shorthorn_controller::naming::TOPOLOGY_NODE_KEY;
use shorthorn_controller::store::ReplicaHealth;

use super::client::AdminClient;
use super::table::{human_age, human_bytes, Cell, Table, Tone};

/// What `ctl` should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every storage node.
    Nodes,
    /// Every volume.
    Volumes,
    /// One volume.
    Volume(String),
    /// Every snapshot.
    Snapshots,
    /// Running raid rebuilds.
    Rebuilds,
}

impl Query {
    fn path(&self) -> String {
        match self {
            Query::Nodes => "/v1/nodes".into(),
            Query::Volumes => "/v1/volumes".into(),
            Query::Volume(id) => format!("/v1/volumes/{id}"),
            Query::Snapshots => "/v1/snapshots".into(),
            Query::Rebuilds => "/v1/rebuilds".into(),
        }
    }
}

/// Fetches `query` and returns what to print: the API's JSON when `json`,
/// else a table (coloured when `colour`).
pub async fn show(
    client: &AdminClient,
    query: &Query,
    json: bool,
    colour: bool,
) -> anyhow::Result<String> {
    let path = query.path();
    if json {
        let body = client.get(&path).await?;
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Ok(text);
    }
    Ok(match query {
        Query::Nodes => nodes(&client.get_json::<Vec<_>>(&path).await?, colour),
        Query::Volumes => volumes(&client.get_json::<Vec<_>>(&path).await?, colour),
        Query::Volume(_) => volume(&client.get_json(&path).await?, colour),
        Query::Snapshots => snapshots(&client.get_json::<Vec<_>>(&path).await?, now()),
        Query::Rebuilds => rebuilds(&client.get_json::<Vec<_>>(&path).await?),
    })
}

/// `ctl set-replicas <id> <count>`: asks the controller to change the
/// replica count and returns what to print (the API's JSON when `json`).
pub async fn set_replicas(
    client: &AdminClient,
    id: &str,
    count: u32,
    json: bool,
    colour: bool,
) -> anyhow::Result<String> {
    let path = format!("/v1/volumes/{id}/replicas");
    let body = client.post(&path, &SetReplicasRequest { count }).await?;
    if json {
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Ok(text);
    }
    let view: ReplicaChangeView = serde_json::from_slice(&body)?;
    Ok(replica_change(&view, colour))
}

/// What `ctl set-replicas` prints: the change, then the volume.
pub fn replica_change(v: &ReplicaChangeView, colour: bool) -> String {
    let mut out = if !v.changed {
        format!(
            "Volume {} already has {} replicas: nothing changed.\n",
            v.volume.id, v.to
        )
    } else {
        let mut line = format!("numberOfReplicas {} -> {}", v.from, v.to);
        if !v.added.is_empty() {
            let how = if v.full_copy {
                "full raid copy: the volume is published and its engine cannot hold it for a thin swap"
            } else {
                "thin copy of the written clusters"
            };
            line.push_str(&format!(
                "; added on {} ({}, {} MiB copied)",
                v.added.join(", "),
                how,
                v.bytes_copied >> 20
            ));
        }
        if !v.removed.is_empty() {
            line.push_str(&format!("; removed from {}", v.removed.join(", ")));
        }
        line.push('\n');
        line
    };
    out.push('\n');
    out.push_str(&volume(&v.volume, colour));
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `ctl nodes` table.
pub fn nodes(nodes: &[NodeView], colour: bool) -> String {
    if nodes.is_empty() {
        return "No storage nodes are configured.\n".into();
    }
    let mut t = Table::new(&[
        "NAME",
        "STATE",
        ">FREE",
        ">TOTAL",
        ">CLUSTERS FREE",
        ">COMMITTED",
        ">PROVISIONABLE",
        ">REPLICAS",
        "FRONTENDS",
        "TOPOLOGY",
    ]);
    for n in nodes {
        let state = if !n.reachable {
            Cell::toned("unreachable", Tone::Bad)
        } else if n.nearly_full {
            Cell::toned("nearly full", Tone::Warn)
        } else {
            Cell::toned("ready", Tone::Good)
        };
        let topology: Vec<String> = n
            .topology
            .iter()
            .filter(|(k, _)| k.as_str() != TOPOLOGY_NODE_KEY)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        t.row(vec![
            n.name.clone().into(),
            state,
            human_bytes(n.free_bytes).into(),
            human_bytes(n.total_bytes).into(),
            format!("{}/{}", n.free_clusters, n.total_clusters).into(),
            format!(
                "{} (x{})",
                human_bytes(n.committed_bytes),
                n.overprovisioning_ratio
            )
            .into(),
            human_bytes(n.provisionable_bytes).into(),
            n.replicas.to_string().into(),
            dash(n.frontends.join(",")).into(),
            dash(topology.join(",")).into(),
        ]);
    }
    let mut out = t.render(colour);
    for n in nodes.iter().filter(|n| !n.reachable) {
        if let Some(e) = &n.error {
            out.push_str(&format!("{}: {e}\n", n.name));
        }
    }
    out
}

fn dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn health(h: ReplicaHealth) -> Cell {
    match h {
        ReplicaHealth::Healthy => Cell::toned("healthy", Tone::Good),
        ReplicaHealth::Degraded => Cell::toned("degraded", Tone::Warn),
        ReplicaHealth::Rebuilding => Cell::toned("rebuilding", Tone::Warn),
        ReplicaHealth::Failed => Cell::toned("failed", Tone::Bad),
        ReplicaHealth::Stale => Cell::toned("stale", Tone::Bad),
    }
}

fn condition(v: &VolumeView) -> Cell {
    if v.condition.abnormal {
        Cell::toned(v.condition.message.clone(), Tone::Warn)
    } else {
        Cell::toned(v.condition.message.clone(), Tone::Good)
    }
}

/// The `ctl volumes` table.
pub fn volumes(volumes: &[VolumeView], colour: bool) -> String {
    if volumes.is_empty() {
        return "No volumes.\n".into();
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        ">SIZE",
        ">REPLICAS",
        "PUBLISHED ON",
        "CONDITION",
    ]);
    for v in volumes {
        let healthy = v
            .replicas
            .iter()
            .filter(|r| r.health == ReplicaHealth::Healthy)
            .count();
        let tone = if healthy as u32 >= v.replica_count {
            Tone::Good
        } else if healthy > 0 {
            Tone::Warn
        } else {
            Tone::Bad
        };
        let published: Vec<&str> = v.published.iter().map(|p| p.node.as_str()).collect();
        t.row(vec![
            v.id.clone().into(),
            v.name.clone().into(),
            human_bytes(v.size_bytes).into(),
            Cell::toned(format!("{healthy}/{}", v.replica_count), tone),
            dash(published.join(",")).into(),
            condition(v),
        ]);
    }
    t.render(colour)
}

/// The `ctl volume <id>` details.
pub fn volume(v: &VolumeView, colour: bool) -> String {
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    let source = match &v.content_source {
        Some(shorthorn_controller::store::ContentSource::Snapshot { id }) => {
            format!("snapshot {id}")
        }
        Some(shorthorn_controller::store::ContentSource::Volume { id }) => format!("volume {id}"),
        None => "-".into(),
    };
    fields.row(vec!["id".into(), v.id.clone().into()]);
    fields.row(vec!["name".into(), v.name.clone().into()]);
    fields.row(vec!["size".into(), human_bytes(v.size_bytes).into()]);
    fields.row(vec![
        "replicas wanted".into(),
        v.replica_count.to_string().into(),
    ]);
    fields.row(vec!["content source".into(), source.into()]);
    fields.row(vec!["condition".into(), condition(v)]);
    fields.row(vec!["epoch".into(), v.epoch.to_string().into()]);
    if let Some(unclean) = &v.unclean {
        fields.row(vec![
            "unclean".into(),
            Cell::toned(unclean.clone(), Tone::Bad),
        ]);
    }
    // Drop the header line: this is a list of fields, not a table.
    let rendered = fields.render(colour);
    let mut out: String = rendered.lines().skip(1).map(|l| format!("{l}\n")).collect();

    out.push_str("\nReplicas:\n");
    if v.replicas.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&["NODE", "LVOL", "UUID", "HEALTH", "WHY"]);
        for r in &v.replicas {
            let why = match (&r.reason, r.since_unix) {
                (Some(reason), Some(since)) => format!("{reason} (since unix {since})"),
                (Some(reason), None) => reason.clone(),
                _ => "-".into(),
            };
            t.row(vec![
                r.node.clone().into(),
                r.lvol.clone().into(),
                r.lvol_uuid.clone().into(),
                health(r.health),
                why.into(),
            ]);
        }
        out.extend(t.render(colour).lines().map(|l| format!("  {l}\n")));
    }
    out.push_str("\nPublished on:\n");
    if v.published.is_empty() {
        out.push_str("  no node\n");
    } else {
        let mut t = Table::new(&["NODE", "FRONTEND", "MODE", "RAID MEMBERS"]);
        for p in &v.published {
            t.row(vec![
                p.node.clone().into(),
                p.frontend.as_str().into(),
                if p.readonly {
                    "read-only"
                } else {
                    "read-write"
                }
                .into(),
                dash(p.members.join(",")).into(),
            ]);
        }
        out.extend(t.render(colour).lines().map(|l| format!("  {l}\n")));
    }
    out
}

/// The `ctl snapshots` table; ages are relative to `now` (Unix seconds).
pub fn snapshots(snapshots: &[SnapshotView], now: u64) -> String {
    if snapshots.is_empty() {
        return "No snapshots.\n".into();
    }
    let mut t = Table::new(&["ID", "NAME", "SOURCE VOLUME", ">SIZE", ">AGE", ">REPLICAS"]);
    for s in snapshots {
        t.row(vec![
            s.id.clone().into(),
            s.name.clone().into(),
            s.source_volume_id.clone().into(),
            human_bytes(s.size_bytes).into(),
            human_age(now.saturating_sub(s.created_unix)).into(),
            s.replicas.len().to_string().into(),
        ]);
    }
    t.render(false)
}

/// The `ctl rebuilds` table.
pub fn rebuilds(rebuilds: &[RebuildView]) -> String {
    if rebuilds.is_empty() {
        return "No rebuilds running.\n".into();
    }
    let mut t = Table::new(&[
        "VOLUME",
        "NODE",
        "PROCESS",
        "MODE",
        "SOURCE",
        "TARGET",
        ">PROGRESS",
        ">COPIED",
        "NOTE",
    ]);
    for r in rebuilds {
        let copied = if r.total_bytes > 0 {
            format!("{} / {} MiB", r.copied_bytes >> 20, r.total_bytes >> 20)
        } else {
            format!("{} blocks", r.blocks)
        };
        let note = match &r.full_copy_reason {
            Some(why) => format!("full copy: {why}"),
            None => r.step.clone(),
        };
        t.row(vec![
            r.volume_id.clone().into(),
            r.node.clone().into(),
            r.process.clone().into(),
            r.mode.clone().into(),
            r.source.clone().into(),
            r.target.clone().into(),
            format!("{:.1}%", r.percent).into(),
            copied.into(),
            note.into(),
        ]);
    }
    t.render(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shorthorn_controller::admin::{ConditionView, ReplicaView};

    #[test]
    fn a_degraded_volume_shows_how_many_replicas_are_healthy() {
        let replica = |node: &str, health| ReplicaView {
            node: node.into(),
            lvol: "lvs/shv-1".into(),
            lvol_uuid: "u".into(),
            health,
            reason: None,
            since_unix: None,
        };
        let v = VolumeView {
            id: "vol-1".into(),
            name: "pvc-1".into(),
            size_bytes: 256 << 20,
            replica_count: 3,
            replicas: vec![
                replica("a", ReplicaHealth::Healthy),
                replica("b", ReplicaHealth::Failed),
                replica("c", ReplicaHealth::Healthy),
            ],
            published: vec![],
            content_source: None,
            condition: ConditionView {
                abnormal: true,
                message: "replica on b is Failed and needs a rebuild".into(),
            },
            epoch: 0,
            unclean: None,
        };
        let change = ReplicaChangeView {
            from: 2,
            to: 3,
            added: vec!["d".into()],
            removed: vec![],
            full_copy: true,
            bytes_copied: 256 << 20,
            changed: true,
            volume: v.clone(),
        };
        let text = replica_change(&change, false);
        assert!(
            text.starts_with("numberOfReplicas 2 -> 3; added on d (full raid copy")
                && text.contains("256 MiB copied")
                && text.contains("replicas wanted"),
            "{text}"
        );
        let same = ReplicaChangeView {
            changed: false,
            ..change
        };
        assert!(replica_change(&same, false).contains("nothing changed"));
        let table = volumes(std::slice::from_ref(&v), false);
        let row = table.lines().nth(1).expect("a row");
        assert!(row.contains("256 MiB") && row.contains("2/3") && row.contains("Failed"));
        let details = volume(&v, false);
        assert!(details.contains("failed"), "{details}");
        assert!(volumes(&[], false).contains("No volumes"));
    }
}
