//! Streams (issue 11): a strom-streams application (`KafkaStreams` in this process, with `--streams-threads` stream
//! threads, by default Kafka's one) processes records that librdkafka wrote beforehand to a 6-partition topic:
//! 100 B values over 1,000 keys. Two topologies over that input:
//! - stateless: `filter` (drops one record in ten) then `map_values` (upper-cases the value) to an output topic;
//! - windowed count: `group_by_key`, tumbling 10 s windows, `count` into an in-memory store logged to its
//!   changelog topic (an update per record, as Kafka Streams without a record cache).
//!
//! The application's producer has the produce scenarios' `batch.size` (`producer.batch.size`); everything else
//! is Kafka Streams' default but the commit interval (below).
//!
//! The rate is input records over the time from the moment the application's tasks are assigned until the last of
//! its writes is on the broker. `start()` and the group join are timed apart (`startup_ms`) and not counted: a new
//! group's first join waits `group.initial.rebalance.delay.ms` (3 s by default, in Strom as in Kafka), which says
//! nothing about processing. (A stream thread reports its tasks assigned once its first poll after the join
//! returns, so that poll's fetch, up to 1 MiB per partition, is not counted either; its processing is.)

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rdkafka::producer::Producer;
use strom_client::admin::{Admin, NewTopic, OffsetSpec};
use strom_streams::{
    KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, TimeWindows,
};
use tokio::time::Instant;

use super::figures::Figures;
use super::produce::{self, Load};

/// Distinct keys of the input.
pub const KEYS: usize = 1_000;
/// Kafka Streams' commit interval under exactly-once, its lowest default: a commit waits for every output to be
/// acknowledged, so it bounds both the pause per commit and how late the windowed count's end is seen.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
pub const WINDOW: Duration = Duration::from_secs(10);
/// The windowed count's store, whose changelog is `<application.id>-counts-changelog`.
const STORE: &str = "counts";
/// The first byte of a value is its record's number mod 10; the stateless topology drops this one.
const DROPPED_DIGIT: u8 = b'7';
/// How often the end condition is looked up: at most this late, a few ListOffsets requests per run.
const POLL: Duration = Duration::from_millis(10);
/// How long the application may go without progress before the run is declared stuck.
const STALL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Stateless,
    WindowedCount,
}

/// Creates `topic` and writes the input with the produce scenarios' producer, waiting for every acknowledgement.
pub fn produce_input(bootstrap: &str, topic: &str, partitions: i32, records: usize) -> Result<()> {
    produce::create_topic(bootstrap, topic, partitions)?;
    let load = Load::HUNDRED_B;
    let producer = produce::producer(bootstrap, load)?;
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:03}")).collect();
    let values: Vec<Vec<u8>> = (0..10u8)
        .map(|digit| {
            let mut value = vec![b'x'; load.record_bytes];
            value[0] = b'0' + digit;
            value
        })
        .collect();
    let progress = super::report::progress_bar(records as u64, "written (streams input)");
    for i in 0..records {
        produce::send(&producer, topic, None, &keys[i % KEYS], &values[i % 10])?;
        if i.is_multiple_of(4096) {
            progress.set_position(i as u64);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("waiting for delivery reports")?;
    progress.finish_and_clear();
    produce::check_failures(&producer)?;
    let acknowledged = produce::acknowledged(&producer);
    if acknowledged != records {
        bail!("{acknowledged} of {records} input records acknowledged");
    }
    Ok(())
}

/// What the stateless topology writes for `records` input records.
fn expected_output(records: usize) -> usize {
    (0..records)
        .filter(|i| b'0' + (i % 10) as u8 != DROPPED_DIGIT)
        .count()
}

fn build(topology: Topology, input: &str, output: &str) -> strom_streams::Topology {
    let builder = StreamsBuilder::new();
    let stream = builder.stream::<Bytes, Bytes>(input);
    match topology {
        Topology::Stateless => stream
            .filter(|_, v| v.first() != Some(&DROPPED_DIGIT))
            .map_values(|v| Bytes::from(v.to_ascii_uppercase()))
            .to(output),
        Topology::WindowedCount => {
            stream
                .group_by_key()
                .windowed_by(TimeWindows::of_size_with_no_grace(WINDOW))
                .count(Materialized::named(STORE));
        }
    }
    builder.build()
}

/// Runs `topology` over the `records` records of `input` (written by [`produce_input`]) and deletes what the run
/// created but `input`.
pub fn run(
    bootstrap: &str,
    input: &str,
    partitions: i32,
    records: usize,
    topology: Topology,
    threads: usize,
) -> Result<Figures> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a tokio runtime for the streams scenario")?;
    runtime.block_on(run_async(
        bootstrap, input, partitions, records, topology, threads,
    ))
}

async fn run_async(
    bootstrap: &str,
    input: &str,
    partitions: i32,
    records: usize,
    topology: Topology,
    threads: usize,
) -> Result<Figures> {
    // The input topic's name is unique per case, run and bench process, so these are too.
    let app = format!("{input}-app");
    let output = format!("{input}-output");
    let admin = Admin::connect(bootstrap)
        .await
        .with_context(|| format!("connecting to {bootstrap}"))?;
    let input_partitions: Vec<(String, i32)> =
        (0..partitions).map(|p| (input.to_string(), p)).collect();
    let input_ends = end_offsets(&admin, &input_partitions).await?;
    if input_ends.iter().sum::<i64>() != records as i64 {
        bail!("{input} holds {input_ends:?} records, not {records}");
    }
    let mut created = Vec::new();
    if topology == Topology::Stateless {
        // Created here rather than on the first write, with the input's partition count.
        let new = NewTopic::new(&output)
            .partitions(partitions)
            .replication_factor(-1);
        for r in admin.create_topics(&[new], false).await? {
            r.result.with_context(|| format!("creating {}", r.topic))?;
        }
        created.push(output.clone());
    } else {
        created.push(format!("{app}-{STORE}-changelog"));
    }

    let state_dir = tempfile::tempdir().context("a state dir for the streams application")?;
    let mut config = StreamsConfig::new(&app, bootstrap);
    config.commit_interval = COMMIT_INTERVAL;
    config.state_dir = state_dir.path().to_path_buf();
    config.num_stream_threads = threads;
    // The application's producer batches as the baseline's does (Kafka's default, 16 KiB, makes the broker
    // handle 16 times the batches: with it the stateless rate was 0.69M records/s where this gives 1.0M).
    config
        .set("producer.batch.size", produce::BATCH_SIZE)
        .map_err(anyhow::Error::msg)?;
    let mut streams = KafkaStreams::new(build(topology, input, &output), config)?;
    let started = Instant::now();
    let measured = async {
        streams.start().await?;
        let running = wait_until_running(&streams).await?;
        let done = match topology {
            // The stateless topology's last write is an output record: done when the output holds all of them.
            Topology::Stateless => {
                let expected = expected_output(records) as i64;
                let output_partitions: Vec<(String, i32)> =
                    (0..partitions).map(|p| (output.clone(), p)).collect();
                let (admin, output_partitions) = (&admin, &output_partitions);
                wait_for(&streams, "output records", expected, move || async move {
                    Ok(end_offsets(admin, output_partitions).await?.iter().sum())
                })
                .await?
            }
            // The count's writes go to its changelog, where records dropped as late, or a window store's
            // expiry tombstones, would make a count of them inexact. Exact instead: the group's committed
            // offsets at the input's end, as the runtime commits input offsets only once every changelog write
            // for the records before them is acknowledged. The commit comes at most COMMIT_INTERVAL after the
            // last record is processed, so that much may be counted beyond the processing.
            Topology::WindowedCount => {
                let (admin, app, input_partitions, input_ends) =
                    (&admin, &app, &input_partitions, &input_ends);
                let committed = move || async move {
                    let offsets = admin.group_offsets_for(app, input_partitions).await?;
                    Ok(offsets
                        .iter()
                        .map(|o| {
                            let end = input_ends[o.partition as usize];
                            o.committed.unwrap_or(0).min(end)
                        })
                        .sum())
                };
                wait_for(
                    &streams,
                    "input records committed",
                    records as i64,
                    committed,
                )
                .await?
            }
        };
        anyhow::Ok((running, done))
    }
    .await;
    streams.close().await;
    let (running, done) = measured?;

    if topology == Topology::WindowedCount {
        // An update per input record, or some were dropped and the count is not of them all.
        let changelog: Vec<(String, i32)> =
            (0..partitions).map(|p| (created[0].clone(), p)).collect();
        let updates: i64 = end_offsets(&admin, &changelog).await?.iter().sum();
        if updates < records as i64 {
            bail!(
                "{} holds {updates} updates for {records} records",
                created[0]
            );
        }
    }
    for r in admin.delete_topics(&created).await? {
        r.result.with_context(|| format!("deleting {}", r.topic))?;
    }
    // The group of a closed application has no member left; deleting it is tidying up, not part of the figure.
    if let Ok(results) = admin.delete_groups(std::slice::from_ref(&app)).await {
        for (group, result) in results {
            if let Err(e) = result {
                eprintln!("note: group {group} not deleted: {e}");
            }
        }
    }

    let mut figures = Figures::new(
        records,
        (records * Load::HUNDRED_B.record_bytes) as u64,
        done - running,
    );
    figures.startup_ms = Some((running - started).as_secs_f64() * 1e3);
    figures.note = Some(match topology {
        Topology::Stateless => {
            "filter + map_values, producer.batch.size as the produce scenarios'; from the tasks' assignment to \
             the last output record on the broker"
        }
        Topology::WindowedCount => {
            "tumbling 10 s windows, in-memory store with changelog, producer.batch.size as the produce \
             scenarios'; from the tasks' assignment to the input committed"
        }
    });
    Ok(figures)
}

/// The high watermark of each partition, in order.
async fn end_offsets(admin: &Admin, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
    admin
        .list_offsets(partitions, OffsetSpec::Latest)
        .await?
        .into_iter()
        .map(|r| {
            let offset = r
                .result
                .with_context(|| format!("end offset of {}-{}", r.topic, r.partition))?;
            offset
                .offset
                .with_context(|| format!("no end offset for {}-{}", r.topic, r.partition))
        })
        .collect()
}

/// Waits until the application's threads have joined the group and been assigned their tasks (each reports itself
/// ready from its first poll after the join, just before processing what that poll returned). Returns when it saw
/// so.
async fn wait_until_running(streams: &KafkaStreams) -> Result<Instant> {
    let deadline = Instant::now() + STALL;
    loop {
        match streams.state() {
            State::Running => return Ok(Instant::now()),
            State::Error(e) => bail!("the streams application failed: {e}"),
            _ if Instant::now() > deadline => {
                bail!("the streams application did not start within {STALL:?}")
            }
            // State is two uncontended locks: looked at often, so the clock starts within a millisecond.
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Polls `progress` until it reaches `target`; returns when it saw it there.
async fn wait_for<F, Fut>(
    streams: &KafkaStreams,
    what: &str,
    target: i64,
    mut progress: F,
) -> Result<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64>>,
{
    let mut last = -1;
    let mut last_change = Instant::now();
    loop {
        let now = progress().await?;
        match now {
            _ if now == target => return Ok(Instant::now()),
            _ if now > target => bail!("{now} {what}, {target} expected"),
            _ if now != last => {
                last = now;
                last_change = Instant::now();
            }
            _ if last_change.elapsed() > STALL => {
                bail!("stuck at {now} of {target} {what} for {STALL:?}")
            }
            _ => {}
        }
        if let State::Error(e) = streams.state() {
            bail!("the streams application failed: {e}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_drops_one_record_in_ten() {
        assert_eq!(expected_output(0), 0);
        assert_eq!(expected_output(7), 7);
        assert_eq!(expected_output(8), 7);
        assert_eq!(expected_output(1_000_000), 900_000);
    }
}
