//! The async driver of the group coordinator: one task owns the [`GroupCoordinator`] state machine, feeds it
//! requests in arrival order, sleeps exactly until its next deadline (session and rebalance timeouts) and routes
//! each output back to the request waiting for it.
//!
//! The state machine measures time in milliseconds since the driver started (a monotonic clock), so wall-clock
//! jumps cannot expire sessions.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::groups::{Event, GroupConfig, GroupCoordinator, Output, ReplyId};

type Inspect = Box<dyn FnOnce(&mut GroupCoordinator) + Send>;

enum Command {
    Request(
        Box<dyn FnOnce(ReplyId) -> Event + Send>,
        oneshot::Sender<Output>,
    ),
    Inspect(Inspect),
}

/// A handle to the coordinator task; cheap to clone.
#[derive(Clone)]
pub struct GroupDriver {
    tx: mpsc::UnboundedSender<Command>,
}

impl GroupDriver {
    pub fn start(config: GroupConfig, shutdown: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(GroupCoordinator::new(config), rx, shutdown));
        Self { tx }
    }

    /// Queues one request event now (so requests reach the coordinator in arrival order) and returns where its
    /// answer will arrive. The receiver errors if the coordinator stopped (broker shutdown).
    pub fn submit(
        &self,
        event: impl FnOnce(ReplyId) -> Event + Send + 'static,
    ) -> oneshot::Receiver<Output> {
        let (tx, rx) = oneshot::channel();
        // On a send error the receiver sees the dropped sender: "coordinator not available".
        let _ = self.tx.send(Command::Request(Box::new(event), tx));
        rx
    }

    /// Queues `f` to run on the coordinator between two events (admin queries, commit validation).
    pub fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut GroupCoordinator) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let inspect: Inspect = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        let _ = self.tx.send(Command::Inspect(inspect));
        rx
    }
}

async fn run(
    mut coordinator: GroupCoordinator,
    mut rx: mpsc::UnboundedReceiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let now_ms = move || start.elapsed().as_millis() as u64;
    let mut waiting: HashMap<ReplyId, oneshot::Sender<Output>> = HashMap::new();
    let mut next_reply: ReplyId = 0;
    loop {
        let deadline = coordinator
            .next_deadline()
            .map(|ms| start + Duration::from_millis(ms));
        let outputs = tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Request(event, reply)) => {
                    next_reply += 1;
                    waiting.insert(next_reply, reply);
                    coordinator.handle(now_ms(), event(next_reply))
                }
                Some(Command::Inspect(f)) => {
                    f(&mut coordinator);
                    Vec::new()
                }
                None => return,
            },
            _ = sleep_until_deadline(deadline) => coordinator.tick(now_ms()),
            _ = shutdown.changed() => return,
        };
        for output in outputs {
            match output.reply() {
                Some(id) => {
                    if let Some(reply) = waiting.remove(&id) {
                        // The requester may have gone (connection closed); nothing to do then.
                        let _ = reply.send(output);
                    }
                }
                None => log_change(&output),
            }
        }
    }
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

fn log_change(output: &Output) {
    if let Output::GroupChanged {
        group_id,
        state,
        generation_id,
    } = output
    {
        tracing::info!(group = %group_id, state = state.as_kafka_str(), generation = generation_id, "group changed");
    }
}
