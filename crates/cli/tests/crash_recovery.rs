//! `kill -9` the broker process in the middle of an acks=all load, restart it on the same data directory, and
//! read back every record that was acknowledged: same partition, same offset, same bytes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::BrokerProcess;
use common::{client_config, consume, delivered, enqueue};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

fn spawn_broker(dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::spawn(&[
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--set".as_ref(),
        "num.partitions=3".as_ref(),
    ])
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn_broker(dir.path());

    let producer: FutureProducer = {
        let mut c = client_config(&broker.addr.to_string());
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "5000")
            .set("reconnect.backoff.max.ms", "100");
        c.create().unwrap()
    };
    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let (enough_tx, enough_rx) = std::sync::mpsc::channel();
    let load = {
        let (acked, stop, producer) = (acked.clone(), stop.clone(), producer.clone());
        std::thread::spawn(move || {
            let mut enough_tx = Some(enough_tx);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Keep up to 64 sends in flight so the kill lands mid-batch.
                let window: Vec<_> = (0..64)
                    .map(|_| {
                        i += 1;
                        let value = format!("record-{i}-{}", "x".repeat((i % 200) as usize));
                        let key = format!("key-{}", i % 97);
                        let f = enqueue(
                            &producer,
                            FutureRecord::to("crash").key(&key).payload(&value),
                        );
                        (f, value)
                    })
                    .collect();
                for (f, value) in window {
                    if let Ok((partition, offset)) = delivered(f) {
                        acked.lock().unwrap().push((partition, offset, value));
                    }
                }
                if acked.lock().unwrap().len() >= 3000 {
                    if let Some(tx) = enough_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        })
    };

    // Wait until a good amount of acknowledged data exists, then kill without warning.
    enough_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("3000 acknowledged records within a minute");
    broker.kill_9();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    drop(producer);

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3000);

    let restarted = spawn_broker(dir.path());
    let consumer: BaseConsumer = {
        let mut c = client_config(&restarted.addr.to_string());
        c.set("group.id", "unused")
            .set("enable.auto.commit", "false");
        c.create().unwrap()
    };
    let mut expected_per_partition = [0usize; 3];
    let mut max_offset = [-1i64; 3];
    for (p, o, _) in &acked {
        expected_per_partition[*p as usize] += 1;
        max_offset[*p as usize] = max_offset[*p as usize].max(*o);
    }
    for p in 0..3i32 {
        if max_offset[p as usize] < 0 {
            continue;
        }
        let got = consume(
            &consumer,
            "crash",
            &[p],
            Offset::Beginning,
            (max_offset[p as usize] + 1) as usize,
        );
        let by_offset: std::collections::HashMap<i64, Option<Vec<u8>>> =
            got.into_iter().map(|r| (r.offset, r.value)).collect();
        for (partition, offset, value) in acked.iter().filter(|(q, _, _)| *q == p) {
            assert_eq!(
                by_offset.get(offset).cloned().flatten().as_deref(),
                Some(value.as_bytes()),
                "acknowledged record {partition}@{offset} lost or changed"
            );
        }
    }
    let (clean, log) = restarted.terminate();
    assert!(clean, "clean exit after SIGTERM; log:\n{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("recovered log after unclean shutdown")),
        "the restart after kill -9 ran recovery"
    );
}
