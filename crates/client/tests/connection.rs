//! The connection against a real Strom broker (handshake, pipelining) and against a fake broker that dies
//! with requests in flight.

mod common;

use std::time::Duration;

use common::TestBroker;
use strom_client::connection::{Connection, ConnectionConfig};
use strom_client::Error;
use strom_protocol::kafka::messages::{ApiKey, MetadataRequest, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_negotiates_and_pipelined_requests_all_complete() {
    let broker = TestBroker::start().await;
    let c = Connection::connect(&broker.bootstrap, ConnectionConfig::default())
        .await
        .unwrap();
    // Strom advertises Produce up to v12 (transaction version 2), which this client caps at v11, and Metadata up
    // to v12.
    assert_eq!(c.version(ApiKey::Produce).unwrap(), 11);
    assert_eq!(c.version(ApiKey::Metadata).unwrap(), 12);
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let responses = futures::future::join_all((0..50).map(|_| c.request(&request))).await;
    for r in responses {
        assert_eq!(r.unwrap().brokers.len(), 1);
    }
    broker.stop().await;
}

#[tokio::test]
async fn in_flight_requests_fail_with_a_typed_error_when_the_broker_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        // Answer the ApiVersions handshake (v3, correlation id 0), then read one request and hang up.
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let response = strom_protocol::codec::encode_response(
            ApiKey::ApiVersions,
            3,
            correlation_id,
            &ResponseKind::ApiVersions(strom_protocol::codec::api_versions_body(0)),
        )
        .unwrap();
        s.write_all(&response).await.unwrap();
        s.read_exact(&mut len).await.unwrap();
        drop(s);
    });
    let c = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .unwrap();
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let results = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all((0..3).map(|_| c.request(&request))),
    )
    .await
    .expect("in-flight requests fail promptly");
    for r in results {
        assert!(matches!(r, Err(Error::ConnectionClosed { .. })), "{r:?}");
    }
    assert!(c.is_closed());
    assert!(matches!(
        c.request(&request).await,
        Err(Error::ConnectionClosed { .. })
    ));
    server.await.unwrap();
}

#[tokio::test]
async fn a_response_over_the_limit_closes_the_connection_before_allocation() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        // A 2 GiB announcement, and nothing behind it.
        s.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
        let _ = s.read_exact(&mut len).await;
    });
    let err = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err}");
}
