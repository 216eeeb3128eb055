//! What the examples share: flags, topic creation, printing an output topic as it grows, and running the
//! application until Ctrl-C (or until it fails).

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition,
};
use strom_protocol::kafka::ResponseError;
use strom_streams::{KafkaStreams, State, StreamsConfig, Topology};

/// The flags every example takes.
pub struct Args {
    pub bootstrap: String,
    pub application_id: String,
    pub state_dir: Option<String>,
    /// Produce the example's sample input first.
    pub demo: bool,
}

pub fn parse_args(default_application_id: &str) -> Result<Args, String> {
    let mut args = Args {
        bootstrap: "127.0.0.1:9092".into(),
        application_id: default_application_id.into(),
        state_dir: None,
        demo: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value()?,
            "--application-id" => args.application_id = value()?,
            "--state-dir" => args.state_dir = Some(value()?),
            "--demo" => args.demo = true,
            _ => {
                return Err(format!(
                    "unknown flag {flag:?}; flags: --bootstrap host:port --application-id id --state-dir path --demo"
                ))
            }
        }
    }
    Ok(args)
}

/// Creates the topics with 6 partitions; a topic that exists already is fine.
pub async fn create_topics(bootstrap: &str, names: &[&str]) -> Result<(), Box<dyn Error>> {
    let admin = Admin::connect(bootstrap).await?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(*n).partitions(6))
        .collect();
    for created in admin.create_topics(&topics, false).await? {
        if let Err(e) = created.result {
            if e.kafka_code() != Some(ResponseError::TopicAlreadyExists) {
                return Err(format!("creating {}: {e}", created.topic).into());
            }
        }
    }
    Ok(())
}

/// Calls `print` with every record of `topic`, from its beginning, as they arrive.
async fn follow(
    bootstrap: String,
    topic: &'static str,
    mut print: impl FnMut(ConsumerRecord),
) -> Result<(), strom_client::Error> {
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let info = consumer
        .cluster()
        .wait_for_topic(topic, Duration::from_secs(30))
        .await?;
    let partitions = (0..info.partition_count() as i32).map(|p| TopicPartition::new(topic, p));
    consumer.assign(partitions).await?;
    loop {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            print(record);
        }
    }
}

/// Resolves when a stream thread stopped on an error, with that error.
async fn failure(streams: &KafkaStreams) -> String {
    loop {
        if let State::Error(e) = streams.state() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An example's `main`: creates `topics`, produces the sample input with `--demo`, runs `topology`, prints
/// `output` with `print` until Ctrl-C, then closes the application.
pub async fn run<D>(
    application_id: &str,
    topics: &[&str],
    topology: Topology,
    demo: impl FnOnce(String) -> D,
    output: &'static str,
    print: impl FnMut(ConsumerRecord) + Send + 'static,
    banner: &str,
) where
    D: Future<Output = Result<(), Box<dyn Error>>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = async {
        let args = parse_args(application_id)?;
        create_topics(&args.bootstrap, topics).await?;
        if args.demo {
            demo(args.bootstrap.clone()).await?;
        }
        let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
        if let Some(dir) = &args.state_dir {
            config.state_dir = dir.into();
        }
        let mut streams = KafkaStreams::new(topology, config)?;
        streams.start().await?;
        let printer = tokio::spawn(follow(args.bootstrap.clone(), output, print));
        println!("{banner}; Ctrl-C stops");
        let result: Result<(), Box<dyn Error>> = tokio::select! {
            signal = tokio::signal::ctrl_c() => signal.map_err(Into::into),
            error = failure(&streams) => Err(error.into()),
        };
        printer.abort();
        streams.close().await;
        result
    }
    .await;
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
