//! DescribeCluster: the cluster id, the live brokers (and, v2 `include_fenced_brokers`, the fenced ones, marked
//! so), and a live broker as controller, as Kafka 4 answers on its broker listener.

use std::sync::Arc;

use strom_protocol::kafka::messages::describe_cluster_response::DescribeClusterBroker;
use strom_protocol::kafka::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use strom_protocol::kafka::ResponseError;

use super::str_bytes;
use crate::server::BrokerState;

/// `endpoint_type` (v1+): 1 asks for brokers, 2 for controllers.
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    state: &Arc<BrokerState>,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut response =
        DescribeClusterResponse::default().with_cluster_id(str_bytes(state.cluster_id.clone()));
    if version >= 1 {
        if request.endpoint_type != ENDPOINT_BROKERS {
            return response
                .with_endpoint_type(request.endpoint_type)
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes(
                    "this is a broker listener: it describes brokers (endpoint type 1)",
                )));
        }
        response = response.with_endpoint_type(ENDPOINT_BROKERS);
    }
    let image = state.cluster.image();
    let include_fenced = version >= 2 && request.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(str_bytes(b.endpoint.host.clone()))
                .with_port(i32::from(b.endpoint.port))
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(b.fenced)
        })
        .collect();
    let controller = state.cluster.controller_for_clients(&image);
    response
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
}
