//! The broker process: opens the data directory, accepts connections on a bound listener, runs background
//! maintenance, and shuts down cleanly when asked.
//!
//! [`Broker::start`] takes an already bound listener (tests bind port 0) and returns a [`RunningBroker`] whose
//! [`RunningBroker::shutdown`] stops accepting, lets connections finish the request they are on, then closes
//! every log with a clean-shutdown marker so the next start skips the recovery scan.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::quorum_driver::OnApplied;
use crate::cluster::{BrokerLifecycle, Cluster, ClusterError};
use crate::config::BrokerConfig;
use crate::flusher::Flusher;
use crate::group_driver::GroupDriver;
use crate::groups::consumer::ConsumerGroupConfig;
use crate::groups::GroupConfig;
use crate::offsets::OffsetStore;
use crate::producer_ids::ProducerIds;
use crate::replication::ReplicaManager;
use crate::topics::{TopicError, Topics};
use crate::{connection, maintenance};
use strom_metadata::Endpoint;

/// Everything request handlers share.
pub struct BrokerState {
    pub config: Arc<BrokerConfig>,
    pub topics: Arc<Topics>,
    pub flusher: Flusher,
    pub producer_ids: ProducerIds,
    pub groups: GroupDriver,
    pub offsets: Arc<OffsetStore>,
    /// The transaction coordinators of the `__transaction_state` partitions this broker leads.
    pub transactions: Arc<crate::transactions::store::TransactionStore>,
    /// The host and port advertised in Metadata and DescribeCluster.
    pub advertised: (String, u16),
    pub cluster_id: String,
    /// The metadata quorum and the committed image this broker serves from.
    pub cluster: Arc<Cluster>,
    /// Partition replication: fetchers of followed partitions, leaders' ISR changes.
    pub replication: Arc<ReplicaManager>,
    /// Request times per API (`metrics.rs`).
    pub metrics: Arc<crate::metrics::RequestMetrics>,
    /// `log.cleaner.io.max.bytes.per.second`, shared by the cleaners (`maintenance.rs`).
    pub cleaner_throttle: Arc<crate::maintenance::IoThrottle>,
}

/// The broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot open data directory: {0}")]
    Storage(#[from] TopicError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("shut down before the broker joined its cluster")]
    Interrupted,
}

pub struct Broker;

/// A started broker.
pub struct RunningBroker {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    quorum_task: tokio::task::JoinHandle<()>,
    lifecycle: Arc<BrokerLifecycle>,
    state: Arc<BrokerState>,
}

impl Broker {
    /// Opens the data directory (recovering logs where needed), joins the metadata quorum, registers with the
    /// controller and starts serving `listener`. Binds the controller listener from the config, if any.
    pub async fn start(
        config: BrokerConfig,
        listener: TcpListener,
    ) -> Result<RunningBroker, BrokerError> {
        let controller_listener = match config.controller_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on controller listener {addr}: {e}"),
                )
            })?),
            None => None,
        };
        Self::start_with(config, listener, controller_listener).await
    }

    pub async fn start_with(
        config: BrokerConfig,
        listener: TcpListener,
        controller_listener: Option<TcpListener>,
    ) -> Result<RunningBroker, BrokerError> {
        let local_addr = listener.local_addr()?;
        let config = Arc::new(config);
        // Read before any log opens: whether the last life of this broker closed every log cleanly.
        let clean_shutdown = take_clean_shutdown_marker(&config.data_dir);
        let topics = Arc::new(Topics::new(config.clone())?);
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let reconcile_topics = topics.clone();
        // The throttles a dynamic broker config changes at run time (`dynamic_config.rs`).
        let quotas = Arc::new(crate::replication::quota::ReplicationQuotas::new(&config));
        let cleaner_throttle = Arc::new(crate::maintenance::IoThrottle::new(
            config.log_cleaner_io_max_bytes_per_second,
        ));
        let (dynamic_config, dynamic_quotas, dynamic_cleaner) =
            (config.clone(), quotas.clone(), cleaner_throttle.clone());
        let on_applied: OnApplied = Arc::new(move |image, _applied| {
            crate::dynamic_config::apply(&dynamic_config, image, &dynamic_quotas, &dynamic_cleaner);
            reconcile_topics.reconcile(image)
        });
        let (cluster, quorum_task) = Cluster::start(
            &config,
            controller_listener,
            on_applied,
            shutdown_rx.clone(),
        )
        .await?;
        let cluster = Arc::new(cluster);
        let flusher = Flusher::start(
            topics.clone(),
            Duration::from_millis(config.flush_interval_ms),
            shutdown_rx.clone(),
        );
        let (load_topics, load_flusher) = (topics.clone(), flusher.clone());
        let partitions = config.offsets_topic_num_partitions;
        let offsets = tokio::task::spawn_blocking(move || {
            OffsetStore::load(load_topics, load_flusher, partitions)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let offsets = Arc::new(offsets);
        let hook_offsets = offsets.clone();
        // The transaction coordinators need the broker's state, which exists only further down.
        let hook_broker: Arc<std::sync::OnceLock<std::sync::Weak<BrokerState>>> = Arc::default();
        let hook_broker_set = hook_broker.clone();
        // The hook may run outside the runtime (metadata is applied where the quorum runs it).
        let runtime = tokio::runtime::Handle::current();
        topics.on_new_leadership(Arc::new(move |p| {
            if &*p.topic == crate::offsets::OFFSETS_TOPIC {
                hook_offsets.reload(p);
            }
            // Transaction coordinators follow the leadership of `__transaction_state` partitions: loaded when
            // it arrives, their unfinished markers resumed once the new image names this broker leader (the
            // marker writer asks it who coordinates, and would otherwise find the old leader and give up).
            if &*p.topic == crate::transactions::record::TRANSACTION_STATE_TOPIC {
                if let Some(state) = hook_broker.get().and_then(std::sync::Weak::upgrade) {
                    let resumed = state.transactions.reload(p);
                    let runtime = runtime.clone();
                    return Some(Box::new(move || {
                        let _runtime = runtime.enter();
                        crate::transactions::driver::resume(&state, resumed);
                    }) as crate::topics::AfterPublish);
                }
            }
            None
        }));
        // Leadership gained between the load and the hook being set is caught here.
        if let Some(t) = topics.get(crate::offsets::OFFSETS_TOPIC) {
            let (store, led) = (offsets.clone(), t.led.clone());
            tokio::task::spawn_blocking(move || led.iter().for_each(|p| store.reload(p)))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        let transactions = Arc::new(crate::transactions::store::TransactionStore::new(
            topics.clone(),
            flusher.clone(),
            config.transaction_state_log_num_partitions,
            crate::transactions::coordinator::Settings {
                max_timeout_ms: config.transaction_max_timeout_ms,
            },
        ));
        let groups = GroupDriver::start(
            GroupConfig {
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                max_size: config.group_max_size,
            },
            ConsumerGroupConfig {
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                assignors: config.group_consumer_assignors.clone(),
                ..ConsumerGroupConfig::default()
            },
            topics.clone(),
            shutdown_rx.clone(),
        );
        let advertised = config.advertised_endpoint(local_addr);
        let lifecycle = BrokerLifecycle::new(
            cluster.clone(),
            Endpoint {
                host: advertised.0.clone(),
                port: advertised.1,
            },
            config.rack.clone(),
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            clean_shutdown,
        );
        let replication =
            ReplicaManager::new(config.clone(), topics.clone(), cluster.clone(), quotas);
        let state = Arc::new(BrokerState {
            replication: replication.clone(),
            advertised,
            cluster_id: cluster.cluster_id.clone(),
            producer_ids: ProducerIds::new(),
            groups,
            offsets,
            transactions: transactions.clone(),
            config: config.clone(),
            topics: topics.clone(),
            flusher,
            cluster: cluster.clone(),
            metrics: Arc::default(),
            cleaner_throttle,
        });
        maintenance::start(state.clone(), shutdown_rx.clone());
        let _ = hook_broker_set.set(Arc::downgrade(&state));
        // Leadership gained before the hook could reach the state is caught here. With no reconcile running
        // meanwhile, a partition the hook loaded is not loaded twice (two coordinators would run two marker writers
        // per transaction).
        topics.serialized(|| {
            if let Some(t) = topics.get(crate::transactions::record::TRANSACTION_STATE_TOPIC) {
                for p in t.led.iter().filter(|p| !transactions.is_loaded(p)) {
                    let resumed = transactions.reload(p);
                    crate::transactions::driver::resume(&state, resumed);
                }
            }
        });
        crate::transactions::driver::start_timeouts(state.clone(), shutdown_rx.clone());
        if !config.roles.broker {
            // A controller alone: it votes and serves the other nodes, and no clients.
            drop(listener);
            tracing::info!(
                controller = ?cluster.controller_addr,
                node_id = config.node_id,
                cluster_id = %cluster.cluster_id,
                "Strom controller ready"
            );
            return Ok(RunningBroker {
                local_addr,
                shutdown_tx,
                accept_task: tokio::spawn(async {}),
                quorum_task,
                lifecycle,
                state,
            });
        }
        // Serve clients only once the controller lists this broker: before that, Metadata would not name it.
        if !lifecycle.join(&mut shutdown_rx).await {
            return Err(BrokerError::Interrupted);
        }
        lifecycle.spawn(shutdown_rx.clone());
        replication.start(shutdown_rx.clone());
        let metrics_addr = match &config.metrics_listener {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
                let bound = listener.local_addr()?;
                tokio::spawn(crate::metrics::serve(
                    listener,
                    state.metrics.clone(),
                    shutdown_rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        let accept_task = tokio::spawn(accept_loop(listener, state.clone(), shutdown_rx));
        tracing::info!(
            listen = %local_addr,
            metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics")),
            advertised = %format!("{}:{}", state.advertised.0, state.advertised.1),
            controller = ?cluster.controller_addr,
            node_id = config.node_id,
            cluster_id = %cluster.cluster_id,
            data_dir = %config.data_dir.display(),
            topics = topics.all().len(),
            "Strom broker ready"
        );
        Ok(RunningBroker {
            local_addr,
            shutdown_tx,
            accept_task,
            quorum_task,
            lifecycle,
            state,
        })
    }
}

impl RunningBroker {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Controlled shutdown: the controller moves leadership off this broker, an active controller hands the
    /// quorum to another voter; then stops accepting, drains connections, flushes and closes every log.
    pub async fn shutdown(self) {
        let cluster = &self.state.cluster;
        if cluster.voter_ids().len() > 1 || !cluster.is_controller() {
            if self.state.config.roles.broker {
                self.lifecycle.shut_down().await;
            }
            if cluster.leader() == Some(cluster.node_id) {
                cluster.resign().await;
                let mut image = cluster.image_watch();
                let _ = tokio::time::timeout(Duration::from_secs(3), async {
                    while cluster.leader() == Some(cluster.node_id) {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(100), image.changed()).await;
                    }
                })
                .await;
            }
        }
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.accept_task.await {
            tracing::error!(error = %e, "accept loop failed");
        }
        let _ = self.quorum_task.await;
        let topics = self.state.topics.clone();
        let data_dir = self.state.config.data_dir.clone();
        match tokio::task::spawn_blocking(move || {
            topics.close_all();
            write_clean_shutdown_marker(&data_dir)
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot record the clean shutdown"),
            Err(e) => tracing::error!(error = %e, "closing logs failed"),
        }
        tracing::info!("Strom broker stopped cleanly");
    }
}

/// Written once every log is closed; its presence at the next start means that start follows a clean shutdown,
/// which the broker reports when it registers (a replica back from an unclean one may have lost unflushed
/// records, so it is no longer an eligible leader replica, KIP-966).
const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// Whether the marker is there, removing it (so a crash of this life is seen as unclean next time).
fn take_clean_shutdown_marker(data_dir: &std::path::Path) -> bool {
    let path = data_dir.join(CLEAN_SHUTDOWN_MARKER);
    let clean = path.exists();
    if clean {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the clean-shutdown marker");
            return false;
        }
    }
    clean
}

fn write_clean_shutdown_marker(data_dir: &std::path::Path) -> std::io::Result<()> {
    let path = data_dir.join(CLEAN_SHUTDOWN_MARKER);
    let file = std::fs::File::create(&path)?;
    file.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection::serve(stream, peer, state.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections see the same shutdown signal and stop after the request in hand; don't wait forever on a
    // client that never reads its response.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}
