//! Dynamic broker configs, as Kafka's `kafka-configs.sh --alter --entity-type brokers` sets them: AlterConfigs and
//! IncrementalAlterConfigs on the BROKER resource, for one broker (its id) or for every broker (the empty name,
//! Kafka's cluster-wide default), kept in the metadata log (`MetadataRecord::BrokerConfig`) so they survive
//! restarts and reach every broker, and applied by each broker as its image changes. The effective value of a key
//! is, most specific first: this broker's dynamic value, the cluster-wide dynamic value, the config file, Kafka's
//! default (DescribeConfigs' sources DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG, STATIC_BROKER_CONFIG,
//! DEFAULT_CONFIG).
//!
//! Strom applies the throttles at run time: the replication rates `kafka-reassign-partitions.sh --throttle` sets,
//! and the log cleaner's I/O rate. Any other broker key needs a restart, and is refused as Kafka refuses a key it
//! cannot update dynamically.

use strom_metadata::MetadataImage;
use strom_protocol::kafka::ResponseError;

use crate::config::BrokerConfig;
use crate::maintenance::IoThrottle;
use crate::replication::quota::ReplicationQuotas;

/// The broker keys Strom updates while it runs.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
    "log.cleaner.io.max.bytes.per.second",
];

/// DescribeConfigs' sources of a broker config.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;

pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key)
}

/// Checks one key and value of an alteration of a broker resource: Kafka's INVALID_REQUEST for a key that cannot
/// change at run time, INVALID_CONFIG for a bad value or an unknown key.
pub fn validate(key: &str, value: Option<&str>) -> Result<(), (i16, String)> {
    if !is_dynamic(key) {
        // `set` answers Ok(false) only for a key it does not know (a bad value is an error).
        let known = crate::kafka_broker_keys::is_kafka_broker_key(key)
            || !matches!(BrokerConfig::default().set(key, ""), Ok(false));
        return Err(if known {
            (
                ResponseError::InvalidRequest.code(),
                format!(
                    "cannot update {key} dynamically: Strom applies only {} while it runs; set it in the config \
                     file and restart",
                    DYNAMIC_BROKER_KEYS.join(", ")
                ),
            )
        } else {
            (
                ResponseError::InvalidConfig.code(),
                format!("unknown broker config {key:?}"),
            )
        });
    }
    if let Some(value) = value {
        BrokerConfig::default()
            .set(key, value)
            .map_err(|e| (ResponseError::InvalidConfig.code(), e.to_string()))?;
    }
    Ok(())
}

/// Alters the dynamic configs of a broker resource (a broker id, or "" for every broker) through the controller:
/// sets `set` and removes `remove`, or with `replace` makes `set` the resource's whole dynamic config
/// (AlterConfigs). Every key and value is checked first; nothing changes when one is refused.
pub async fn alter(
    state: &crate::server::BrokerState,
    resource: &str,
    set: strom_metadata::Configs,
    remove: Vec<String>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if !resource.is_empty() && resource.parse::<i32>().is_err() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("broker resource {resource:?} is neither a broker id nor \"\" (every broker)"),
        ));
    }
    for (key, value) in &set {
        validate(key, Some(value))?;
    }
    for key in &remove {
        validate(key, None)?;
    }
    state
        .cluster
        .request(
            strom_metadata::ControllerRequest::AlterBrokerConfigs {
                resource: resource.to_string(),
                set,
                remove,
                replace,
                validate_only,
            },
            crate::cluster::DEFAULT_TIMEOUT,
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            let e = crate::topics::TopicError::from(e);
            (e.code(), e.to_string())
        })
}

/// The dynamic value of `key` for broker `node_id` and its source, if one is set.
pub fn dynamic_value(image: &MetadataImage, node_id: i32, key: &str) -> Option<(String, i8)> {
    let of = |resource: &str| {
        image
            .broker_configs
            .get(resource)
            .and_then(|c| c.get(key))
            .cloned()
    };
    of(&node_id.to_string())
        .map(|v| (v, SOURCE_DYNAMIC_BROKER))
        .or_else(|| of("").map(|v| (v, SOURCE_DYNAMIC_DEFAULT_BROKER)))
}

/// This broker's config with the dynamic values of `image` applied over the static ones.
pub fn effective(static_config: &BrokerConfig, image: &MetadataImage) -> BrokerConfig {
    let mut config = static_config.clone();
    for key in DYNAMIC_BROKER_KEYS {
        if let Some((value, _)) = dynamic_value(image, static_config.node_id, key) {
            if let Err(e) = config.set(key, &value) {
                // Validated when it was set; a value from a newer broker version this one cannot read.
                tracing::warn!(key, value, error = %e, "dynamic broker config not applied");
            }
        }
    }
    config
}

/// Applies the dynamic configs of a newly committed image to the throttles.
pub fn apply(
    static_config: &BrokerConfig,
    image: &MetadataImage,
    quotas: &ReplicationQuotas,
    cleaner: &IoThrottle,
) {
    let as_in_the_file = quotas.unchanged_from(static_config)
        && cleaner.rate() == static_config.log_cleaner_io_max_bytes_per_second;
    if image.broker_configs.is_empty() && as_in_the_file {
        return;
    }
    let config = effective(static_config, image);
    quotas.set_limits(&config);
    cleaner.set_rate(config.log_cleaner_io_max_bytes_per_second);
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_metadata::Configs;

    fn image(configs: &[(&str, &str, &str)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (resource, key, value) in configs {
            image
                .broker_configs
                .entry(resource.to_string())
                .or_insert_with(Configs::new)
                .insert(key.to_string(), value.to_string());
        }
        image
    }

    #[test]
    fn a_broker_s_own_value_wins_over_the_cluster_default_over_the_file() {
        let mut file = BrokerConfig {
            node_id: 2,
            ..Default::default()
        };
        file.set("leader.replication.throttled.rate", "100")
            .unwrap();
        let both = image(&[
            ("", "leader.replication.throttled.rate", "200"),
            ("2", "leader.replication.throttled.rate", "300"),
            ("3", "leader.replication.throttled.rate", "400"),
            ("", "follower.replication.throttled.rate", "500"),
        ]);
        let c = effective(&file, &both);
        assert_eq!(c.leader_replication_throttled_rate, 300);
        assert_eq!(c.follower_replication_throttled_rate, 500);
        assert_eq!(
            dynamic_value(&both, 2, "follower.replication.throttled.rate"),
            Some(("500".into(), SOURCE_DYNAMIC_DEFAULT_BROKER))
        );
        let c = effective(&file, &MetadataImage::default());
        assert_eq!(c.leader_replication_throttled_rate, 100);
        assert_eq!(c.follower_replication_throttled_rate, u64::MAX);
    }

    #[test]
    fn the_throttles_follow_the_image_and_return_to_the_file_s_values_when_removed() {
        let file = BrokerConfig::default();
        let quotas = ReplicationQuotas::new(&file);
        let cleaner = IoThrottle::new(file.log_cleaner_io_max_bytes_per_second);
        let set = image(&[
            ("", "log.cleaner.io.max.bytes.per.second", "1000000"),
            ("1", "follower.replication.throttled.rate", "2000"),
        ]);
        apply(&file, &set, &quotas, &cleaner);
        assert_eq!(cleaner.rate(), 1_000_000.0);
        assert_eq!(quotas.follower.limit(), 2000);
        assert_eq!(quotas.leader.limit(), u64::MAX);
        apply(&file, &MetadataImage::default(), &quotas, &cleaner);
        assert_eq!(cleaner.rate(), f64::MAX);
        assert_eq!(quotas.follower.limit(), u64::MAX);
    }

    #[test]
    fn only_the_throttles_change_at_run_time_with_kafka_s_errors_otherwise() {
        assert_eq!(
            validate("leader.replication.throttled.rate", Some("1000")),
            Ok(())
        );
        assert_eq!(
            validate("log.cleaner.io.max.bytes.per.second", None),
            Ok(())
        );
        let (code, message) =
            validate("leader.replication.throttled.rate", Some("-1")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidConfig.code());
        assert!(
            message.contains("leader.replication.throttled.rate"),
            "{message}"
        );
        let (code, message) = validate("num.io.threads", Some("8")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRequest.code());
        assert!(
            message.contains("cannot update num.io.threads dynamically"),
            "{message}"
        );
        let (code, message) = validate("num.partitions", Some("3")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidRequest.code(), "{message}");
        let (code, _) = validate("no.such.key", Some("1")).unwrap_err();
        assert_eq!(code, ResponseError::InvalidConfig.code());
    }
}
