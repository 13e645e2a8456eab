//! The etcd leader elector: stand by until the leader key is free, claim it
//! with a fresh lease, renew the lease while leading, step down when it
//! cannot be renewed in time (or the key is gone or someone else's), and
//! campaign again.
//!
//! The leader's own deadline is one renewal interval before the lease can
//! expire at etcd: it measures from when it *sent* its last successful
//! renewal, etcd from when it received it, so the controller always stops
//! first. Its writes carry the leader-key condition regardless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Role, Status};
use crate::store::{Claim, EtcdStore, Lease, StoreError};

/// Timing and identity of one elector.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub identity: String,
    pub ttl: Duration,
    pub keepalive: Duration,
    pub retry: Duration,
}

/// One won election.
#[derive(Debug, Clone, Copy)]
struct Term {
    lease: Lease,
    /// Create revision of the leader key.
    revision: u64,
    /// Until when this controller may act without another renewal.
    valid_until: Instant,
}

/// What a standby tells the callers it refuses.
pub(super) fn standby_reason(holder: Option<&str>) -> String {
    match holder {
        Some(holder) => format!(
            "this controller is standing by: controller {holder} holds the leader lease on etcd"
        ),
        None => "this controller is standing by: it does not hold the leader lease on etcd".into(),
    }
}

/// Campaigns until `stop` turns true, then gives the lease up.
pub(super) async fn run(
    store: EtcdStore,
    settings: Settings,
    status: Arc<watch::Sender<Status>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let term = tokio::select! {
            _ = stopped(&mut stop) => return,
            term = acquire(&store, &settings, &status) => term,
        };
        let revision = term.revision;
        store.fence().hold(revision, term.valid_until.into_std());
        status.send_modify(|s| {
            s.term += 1;
            s.role = Role::Elected;
        });
        tracing::info!(identity = %settings.identity, lease = term.lease.id, revision, "elected leader");
        let why = tokio::select! {
            _ = stopped(&mut stop) => {
                stand_down(&store, &status, "this controller is shutting down".into());
                give_up(&store, term.lease).await;
                tracing::info!("gave up the leader lease");
                return;
            }
            why = hold(&store, &settings, term) => why,
        };
        let reason = format!("this controller lost leadership: {why}");
        tracing::warn!(%reason, "stepping down: reconciler stopped, calls refused; campaigning again");
        stand_down(&store, &status, reason);
        // If the lease still exists (a slow etcd), free the key for the others.
        give_up(&store, term.lease).await;
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender (the handle gone) means stop too.
    let _ = stop.wait_for(|s| *s).await;
}

fn stand_down(store: &EtcdStore, status: &watch::Sender<Status>, reason: String) {
    store.fence().close(reason.clone());
    status.send_modify(|s| s.role = Role::Standby { reason });
}

async fn give_up(store: &EtcdStore, lease: Lease) {
    if let Err(e) = store.revoke_lease(lease.id).await {
        tracing::warn!(error = %e, lease = lease.id, "could not revoke the leader lease; it expires by itself");
    }
}

/// Stands by until this controller holds the leader key.
async fn acquire(store: &EtcdStore, settings: &Settings, status: &watch::Sender<Status>) -> Term {
    // A lease whose claim's answer was lost: the claim may have applied.
    let mut pending: Option<Lease> = None;
    let mut last_reason = String::new();
    loop {
        let reason = match attempt(store, settings, &mut pending).await {
            Ok(Attempt::Won(term)) => return term,
            Ok(Attempt::Held(holder)) => standby_reason(holder.as_deref()),
            Err(e) => format!(
                "this controller is standing by: it cannot reach etcd to take the leader lease ({e})"
            ),
        };
        if reason != last_reason {
            tracing::info!(%reason, "waiting for the leader lease");
            store.fence().close(reason.clone());
            status.send_if_modified(|s| {
                let role = Role::Standby {
                    reason: reason.clone(),
                };
                let changed = s.role != role;
                s.role = role;
                changed
            });
            last_reason = reason;
        }
        tokio::time::sleep(settings.retry).await;
    }
}

enum Attempt {
    Won(Term),
    Held(Option<String>),
}

/// One look at the leader key, and a claim when it is free.
async fn attempt(
    store: &EtcdStore,
    settings: &Settings,
    pending: &mut Option<Lease>,
) -> Result<Attempt, StoreError> {
    if let Some(record) = store.leader().await? {
        if let Some(lease) = pending.filter(|l| l.id == record.lease) {
            // Our claim applied; its answer was lost. Renew to learn the deadline.
            *pending = None;
            let sent = Instant::now();
            if let Some(ttl) = store.keep_alive(lease.id).await? {
                return Ok(Attempt::Won(Term {
                    lease,
                    revision: record.revision,
                    valid_until: deadline(sent, ttl, settings),
                }));
            }
            return Ok(Attempt::Held(None));
        }
        if let Some(lease) = pending.take() {
            let _ = store.revoke_lease(lease.id).await;
        }
        return Ok(Attempt::Held(Some(record.holder)));
    }
    let sent = Instant::now();
    let lease = store.grant_lease(settings.ttl).await?;
    *pending = Some(lease);
    match store.claim_leadership(&settings.identity, lease.id).await? {
        Claim::Won { revision } => {
            *pending = None;
            Ok(Attempt::Won(Term {
                lease,
                revision,
                valid_until: deadline(sent, lease.ttl, settings),
            }))
        }
        Claim::Held(record) => {
            *pending = None;
            let _ = store.revoke_lease(lease.id).await;
            Ok(Attempt::Held(record.map(|r| r.holder)))
        }
    }
}

/// One renewal interval before the lease, renewed at `sent`, can expire.
fn deadline(sent: Instant, ttl: Duration, settings: &Settings) -> Instant {
    sent + ttl.saturating_sub(settings.keepalive)
}

/// Leads until the lease cannot be renewed in time, or the leader key is
/// gone or someone else's; returns why.
async fn hold(store: &EtcdStore, settings: &Settings, term: Term) -> String {
    let mut valid_until = term.valid_until;
    loop {
        let next = (Instant::now() + settings.keepalive).min(valid_until);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = store.fence().lost(term.revision) => {
                return "etcd refused a write: the leader key is gone or someone else's".into();
            }
        }
        if Instant::now() >= valid_until {
            return "its etcd lease could not be renewed in time".into();
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(valid_until, renew(store, term)).await {
            Err(_) => return "its etcd lease could not be renewed in time".into(),
            Ok(Ok(Renewal::Renewed(ttl))) => {
                valid_until = deadline(sent, ttl, settings);
                store.fence().renew(term.revision, valid_until.into_std());
            }
            Ok(Ok(Renewal::Lost(why))) => return why,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "renewing the leader lease failed; retrying");
            }
        }
    }
}

enum Renewal {
    Renewed(Duration),
    Lost(String),
}

/// Renews the lease and checks the leader key is still this term's.
async fn renew(store: &EtcdStore, term: Term) -> Result<Renewal, StoreError> {
    let Some(ttl) = store.keep_alive(term.lease.id).await? else {
        return Ok(Renewal::Lost(
            "its etcd lease expired or was revoked".into(),
        ));
    };
    Ok(match store.leader().await? {
        Some(record) if record.revision == term.revision => Renewal::Renewed(ttl),
        Some(record) => Renewal::Lost(format!("controller {} took over", record.holder)),
        None => Renewal::Lost("its leader key was deleted".into()),
    })
}
