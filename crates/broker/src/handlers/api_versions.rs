//! ApiVersions: the served APIs and their version ranges (see `strom_protocol::apis`), and (v3+) the features
//! the cluster has finalized: `transaction.version` 2, so producers that know KIP-890 part 2 use it.

use strom_protocol::codec::api_versions_body;
use strom_protocol::kafka::messages::api_versions_response::{
    FinalizedFeatureKey, SupportedFeatureKey,
};
use strom_protocol::kafka::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::kafka::protocol::StrBytes;

/// Kafka's feature name for the transaction protocol version.
const TRANSACTION_VERSION: &str = "transaction.version";
/// Transaction version 2: the epoch is bumped at each EndTxn and partitions join implicitly (KIP-890 part 2).
const TRANSACTION_VERSION_LEVEL: i16 = 2;
/// The features never change, so their epoch does not either (clients take features from the highest epoch
/// they have seen; -1 would mean none).
const FINALIZED_FEATURES_EPOCH: i64 = 1;

pub fn handle(_request: ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let response = api_versions_body(0);
    if version < 3 {
        return response;
    }
    response
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_LEVEL)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version_level(TRANSACTION_VERSION_LEVEL)
            .with_max_version_level(TRANSACTION_VERSION_LEVEL)])
}
