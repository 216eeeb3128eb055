//! `strom broker`: run a broker with embedded defaults, a Kafka-style config file and flag overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use strom_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// A server.properties-style file with Kafka's key names (log.dirs, num.partitions, log.retention.ms, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides log.dirs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on for Kafka clients (overrides listeners).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to (overrides advertised.listeners).
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Set any config key, as in the config file; repeatable: --set num.partitions=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn broker_config(args: &BrokerArgs) -> Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let unknown = config
            .apply_properties(&text)
            .with_context(|| format!("in config file {}", path.display()))?;
        for key in unknown {
            tracing::warn!(key, "ignoring unknown config key");
        }
    }
    for kv in &args.overrides {
        let Some((key, value)) = kv.split_once('=') else {
            bail!("--set expects KEY=VALUE, got {kv:?}")
        };
        if !config.set_or_ignore(key.trim(), value.trim())? {
            bail!("unknown config key {key:?}");
        }
    }
    if !config.ignored.is_empty() {
        tracing::warn!(
            keys = %config.ignored.join(", "),
            "Kafka broker config keys accepted but not acted on by Strom"
        );
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = &args.listen {
        config.set("listeners", listen)?;
    }
    if let Some(advertised) = &args.advertised {
        config.set("advertised.listeners", advertised)?;
    }
    Ok(config)
}

pub fn run(args: BrokerArgs) -> Result<()> {
    let config = broker_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // A controller alone serves no clients: it takes no client port.
        let listen: SocketAddr = if config.roles.broker {
            config.listen
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // Registered before the broker starts: a SIGTERM that arrives while it starts (or just as it reports
        // ready) stops it cleanly once started, instead of killing the process.
        let stop = shutdown_signal();
        let broker = Broker::start(config, listener).await?;
        stop.await;
        tracing::info!("shutting down");
        broker.shutdown().await;
        Ok(())
    })
}

/// Registers for SIGTERM and Ctrl-C now (call it inside the runtime); the future completes on either. A signal
/// that arrives between the call and the first poll is kept, not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
