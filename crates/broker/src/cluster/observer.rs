//! A broker-only node (`process.roles=broker`) follows the metadata log without voting: it long-polls a controller
//! for the batches committed after the last one it applied (the whole image when it is further behind than that
//! controller's log reaches), applies them to its own image exactly as voters do, and learns who leads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strom_metadata::MetadataImage;
use tokio::sync::watch;

use super::peers::{Identity, RpcClient};
use super::quorum_driver::OnApplied;
use super::wire::{PeerRequest, PeerResponse};

const LONG_POLL_MS: u64 = 1000;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

pub struct Observer {
    pub identity: Identity,
    /// Controller listener addresses to fetch from, tried in turn.
    pub bootstrap: Vec<String>,
    pub on_applied: OnApplied,
    pub image_tx: watch::Sender<Arc<MetadataImage>>,
    pub leader_tx: watch::Sender<Option<i32>>,
    /// Voter addresses by id, as the controllers report them (for sending requests to the leader).
    pub voters: Arc<Mutex<HashMap<i32, String>>>,
    /// Set once a fetch came back with nothing left to catch up.
    pub caught_up: watch::Sender<bool>,
}

impl Observer {
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let clients: Vec<RpcClient> = self
                .bootstrap
                .iter()
                .map(|a| RpcClient::new(self.identity.clone(), a.clone()))
                .collect();
            let mut image = (*self.image_tx.borrow()).as_ref().clone();
            let mut current = 0usize;
            loop {
                let request = PeerRequest::FetchMetadata {
                    from: image.applied_index,
                    max_wait_ms: LONG_POLL_MS,
                };
                let answer = tokio::select! {
                    a = clients[current].call(request, Duration::from_millis(LONG_POLL_MS * 5)) => a,
                    _ = shutdown.changed() => return,
                };
                let delta = match answer {
                    Ok(PeerResponse::Metadata(delta)) => delta,
                    other => {
                        tracing::debug!(controller = %self.bootstrap[current], answer = ?other.err(), "metadata fetch failed; trying the next controller");
                        current = (current + 1) % clients.len();
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY_BACKOFF) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                };
                {
                    let mut voters = self.voters.lock();
                    for v in &delta.voters {
                        if let Some((id, addr)) = v.split_once('@') {
                            if let Ok(id) = id.parse() {
                                voters.insert(id, addr.to_string());
                            }
                        }
                    }
                }
                if let Some(leader) = delta.leader {
                    self.leader_tx.send_if_modified(|l| {
                        let changed = *l != Some(leader);
                        *l = Some(leader);
                        changed
                    });
                }
                let full = delta.batches.len() >= 1000;
                if delta.image.is_some() || !delta.batches.is_empty() {
                    if let Some(snapshot) = delta.image {
                        image = snapshot;
                    }
                    for (index, batch) in &delta.batches {
                        if *index <= image.applied_index {
                            continue;
                        }
                        if image.apply_batch(*index, batch).is_err() {
                            image.skip(*index);
                        }
                    }
                    let applied = image.clone();
                    let on_applied = self.on_applied.clone();
                    let applied = match tokio::task::spawn_blocking(move || {
                        on_applied(&applied, &[]);
                        applied
                    })
                    .await
                    {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::error!(error = %e, "applying metadata failed");
                            return;
                        }
                    };
                    self.image_tx.send_replace(Arc::new(applied));
                }
                if !full {
                    self.caught_up
                        .send_if_modified(|c| !std::mem::replace(c, true));
                }
            }
        })
    }
}
