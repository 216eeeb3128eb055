//! DescribeCluster: the cluster id, this broker, and this broker as controller.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_cluster_response::DescribeClusterBroker;
use strom_protocol::kafka::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::server::BrokerState;

pub fn handle(
    state: &Arc<BrokerState>,
    _request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let node = BrokerId(state.config.node_id);
    let broker = DescribeClusterBroker::default()
        .with_broker_id(node)
        .with_host(str_bytes(state.advertised.0.clone()))
        .with_port(i32::from(state.advertised.1));
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(state.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![broker])
}
