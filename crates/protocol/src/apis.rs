//! The APIs Strom serves and the version ranges it advertises in ApiVersions.
//!
//! The advertised set is kept consistent with one real Kafka release (3.0-era ranges, trimmed to what Strom
//! implements), because kafka-python and aiokafka infer a broker release from a few advertised versions and pick
//! every request version from that guess. Produce advertises v0 although only v3+ (RecordBatch v2) is served:
//! librdkafka before 2.11.1 enables gzip/snappy/lz4 only when Produce v0 is in the advertised range, exactly as
//! Apache Kafka 4.0 still advertises it and rejects the old versions.

use kafka_protocol::messages::ApiKey;

/// One served API: the range advertised to clients and the lowest version actually decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    /// Versions in `min_version..serve_min_version` are advertised for feature detection but refused.
    pub serve_min_version: i16,
}

impl ApiSupport {
    const fn new(key: ApiKey, min_version: i16, max_version: i16) -> Self {
        Self {
            key,
            min_version,
            max_version,
            serve_min_version: min_version,
        }
    }

    /// Whether a request at `version` can be decoded and handled.
    pub fn serves(&self, version: i16) -> bool {
        (self.serve_min_version..=self.max_version).contains(&version)
    }
}

/// Every API Strom answers, in API key order.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    ApiSupport {
        key: ApiKey::Produce,
        min_version: 0,
        max_version: 12,
        serve_min_version: 3,
    },
    ApiSupport::new(ApiKey::Fetch, 4, 12),
    ApiSupport::new(ApiKey::ListOffsets, 1, 7),
    ApiSupport::new(ApiKey::Metadata, 0, 12),
    ApiSupport::new(ApiKey::OffsetCommit, 2, 8),
    ApiSupport::new(ApiKey::OffsetFetch, 1, 8),
    ApiSupport::new(ApiKey::FindCoordinator, 0, 4),
    ApiSupport::new(ApiKey::JoinGroup, 0, 7),
    ApiSupport::new(ApiKey::Heartbeat, 0, 4),
    ApiSupport::new(ApiKey::LeaveGroup, 0, 4),
    ApiSupport::new(ApiKey::SyncGroup, 0, 5),
    ApiSupport::new(ApiKey::DescribeGroups, 0, 5),
    ApiSupport::new(ApiKey::ListGroups, 0, 4),
    ApiSupport::new(ApiKey::ApiVersions, 0, 3),
    ApiSupport::new(ApiKey::CreateTopics, 2, 7),
    ApiSupport::new(ApiKey::DeleteTopics, 1, 6),
    ApiSupport::new(ApiKey::DeleteRecords, 0, 2),
    ApiSupport::new(ApiKey::InitProducerId, 0, 5),
    ApiSupport::new(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Transactions (issue 12). AddPartitionsToTxn v4-5 is KIP-890's broker-to-broker form (a partition leader
    // verifies a transaction with its coordinator, or adds a partition to it; producers use v0-3, as Kafka's own
    // do). Produce v12, EndTxn v5 and TxnOffsetCommit v5 are transaction version 2 (KIP-890 part 2, finalized as
    // `transaction.version` 2 in ApiVersions): the epoch bumped at each EndTxn, partitions added implicitly.
    ApiSupport::new(ApiKey::AddPartitionsToTxn, 0, 5),
    ApiSupport::new(ApiKey::AddOffsetsToTxn, 0, 4),
    ApiSupport::new(ApiKey::EndTxn, 0, 5),
    // Between brokers: a coordinator writes markers on partitions another broker leads.
    ApiSupport::new(ApiKey::WriteTxnMarkers, 1, 1),
    ApiSupport::new(ApiKey::TxnOffsetCommit, 0, 5),
    ApiSupport::new(ApiKey::DescribeConfigs, 1, 4),
    ApiSupport::new(ApiKey::AlterConfigs, 0, 2),
    ApiSupport::new(ApiKey::DescribeLogDirs, 1, 2),
    ApiSupport::new(ApiKey::CreatePartitions, 0, 3),
    ApiSupport::new(ApiKey::DeleteGroups, 0, 2),
    // kafka-leader-election.sh and admin clients' electLeaders (PREFERRED only).
    ApiSupport::new(ApiKey::ElectLeaders, 0, 2),
    ApiSupport::new(ApiKey::IncrementalAlterConfigs, 0, 1),
    // KIP-455 partition reassignment (kafka-reassign-partitions.sh, admin clients, `strom topic reassign`); v1 is
    // KIP-860's allow_replication_factor_change.
    ApiSupport::new(ApiKey::AlterPartitionReassignments, 0, 1),
    ApiSupport::new(ApiKey::ListPartitionReassignments, 0, 0),
    ApiSupport::new(ApiKey::OffsetDelete, 0, 0),
    // kafka-metadata-quorum.sh and admin clients' describeMetadataQuorum; any broker answers with the active
    // controller's view.
    ApiSupport::new(ApiKey::DescribeQuorum, 0, 2),
    // v1 adds endpoint_type (kafka-python 3.0.12's describe_cluster() reads it), v2 include_fenced_brokers.
    ApiSupport::new(ApiKey::DescribeCluster, 0, 2),
    // KIP-664's transaction admin APIs (kafka-transactions.sh, admin clients, `strom transactions`); v1 of
    // ListTransactions is KIP-994's duration filter, v2 KIP-1152's transactional id pattern.
    ApiSupport::new(ApiKey::DescribeProducers, 0, 0),
    ApiSupport::new(ApiKey::DescribeTransactions, 0, 0),
    ApiSupport::new(ApiKey::ListTransactions, 0, 2),
    // KIP-848: librdkafka >= 2.12 (`group.protocol=consumer`) needs v1, which carries client-generated member ids.
    ApiSupport::new(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    ApiSupport::new(ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The support entry for a raw API key, if Strom serves it.
pub fn lookup(api_key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|a| a.key as i16 == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_is_decodable_by_the_message_crate() {
        for api in SUPPORTED_APIS {
            let valid = api.key.valid_versions();
            assert!(api.serve_min_version >= valid.min, "{:?}", api.key);
            assert!(api.max_version <= valid.max, "{:?}", api.key);
            assert!(api.min_version <= api.serve_min_version, "{:?}", api.key);
        }
    }

    #[test]
    fn librdkafka_pinned_feature_versions_are_advertised() {
        let advertises = |key: ApiKey, v: i16| {
            let a = lookup(key as i16).unwrap();
            (a.min_version..=a.max_version).contains(&v)
        };
        // MsgVer2, compression feature detection, zstd, idempotence, timestamp lookups.
        assert!(advertises(ApiKey::Produce, 3) && advertises(ApiKey::Fetch, 4));
        assert!(advertises(ApiKey::Produce, 0));
        assert!(advertises(ApiKey::Produce, 7) && advertises(ApiKey::Fetch, 10));
        assert!(advertises(ApiKey::InitProducerId, 0));
        assert!(advertises(ApiKey::ListOffsets, 1));
        // The balanced consumer: FindCoordinator v0, OffsetCommit v1-2, OffsetFetch v1, JoinGroup, SyncGroup,
        // Heartbeat and LeaveGroup v0. (librdkafka 2.0's lz4 support also hangs off FindCoordinator v0.)
        assert!(advertises(ApiKey::FindCoordinator, 0));
        assert!(advertises(ApiKey::OffsetCommit, 2) && advertises(ApiKey::OffsetFetch, 1));
        for key in [
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
        ] {
            assert!(advertises(key, 0), "{key:?}");
        }
    }
}
