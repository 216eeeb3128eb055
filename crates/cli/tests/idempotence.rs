//! The idempotent producer over the wire: InitProducerId, sequence checks, a retried batch answered with its
//! original offset, and producer state that survives a broker restart.

mod common;

use common::raw::{produce, record_batch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProducerId, RequestKind, ResponseKind,
};

fn init_producer_id(client: &mut RawClient, current: Option<(i64, i16)>) -> (i16, i64, i16) {
    let mut request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    if let Some((id, epoch)) = current {
        request = request
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
    }
    let ResponseKind::InitProducerId(r) = client.request(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(request),
    ) else {
        panic!("wrong response type")
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

#[test]
fn retries_dedupe_gaps_are_refused_and_state_survives_restart() {
    let broker = TestBroker::start();
    broker.create_topic("idem", 1, &[]);
    let mut client = RawClient::connect(broker.addr);
    let (code, pid, epoch) = init_producer_id(&mut client, None);
    assert_eq!((code, epoch), (0, 0));
    let (_, other_pid, _) = init_producer_id(&mut client, None);
    assert_ne!(pid, other_pid, "every producer gets its own id");

    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 0)))),
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 5)))),
        (0, 5)
    );
    // A retry of the last batch gets its original offset and appends nothing.
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 5)))),
        (0, 5)
    );
    // A gap in the sequence is refused with OUT_OF_ORDER_SEQUENCE_NUMBER and does not move the sequence.
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 20)))).0,
        45
    );

    drop(client);
    let temp = broker.stop().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {});
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 5)))),
        (0, 5),
        "the retry is still recognised after a restart"
    );
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(5, Some((pid, 0, 10)))),
        (0, 10)
    );

    // KIP-360 epoch bump: same id, next epoch; the old epoch is fenced.
    let (code, bumped_pid, bumped_epoch) = init_producer_id(&mut client, Some((pid, 0)));
    assert_eq!((code, bumped_pid, bumped_epoch), (0, pid, 1));
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(2, Some((pid, 1, 0)))),
        (0, 15)
    );
    assert_eq!(
        produce(&mut client, "idem", 0, record_batch(2, Some((pid, 0, 15)))).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );

    // Producer ids are never handed out twice, even across restarts.
    let (_, fresh, _) = init_producer_id(&mut client, None);
    assert!(fresh > other_pid);
    let hw = broker.broker().state().topics.get("idem").unwrap().local[0].high_watermark();
    assert_eq!(hw, 17);
}
