//! Kafka error codes in words, for messages that name the problem instead of a number.

use strom_protocol::kafka::ResponseError;

/// A client error as one line for the user: a Kafka error code is named and explained in words.
pub fn explain(error: &strom_client::Error) -> String {
    match error {
        strom_client::Error::Kafka { code, context } => {
            format!("{context}: {}", describe(code.code()))
        }
        other => other.to_string(),
    }
}

/// `explain` as an `anyhow::Error`, for `map_err` in commands.
pub fn to_anyhow(error: strom_client::Error) -> anyhow::Error {
    anyhow::anyhow!(explain(&error))
}

/// `"UNKNOWN_TOPIC_OR_PARTITION (3): the topic or partition does not exist"`.
pub fn describe(code: i16) -> String {
    let error = match ResponseError::try_from_code(code) {
        None => return "no error".to_string(),
        Some(ResponseError::Unknown(_)) => {
            return format!("error code {code} (not known to this client)")
        }
        Some(e) => e,
    };
    let name = screaming_snake(&format!("{error:?}"));
    match explanation(code) {
        Some(words) => format!("{name} ({code}): {words}"),
        None => format!("{name} ({code})"),
    }
}

/// The words for the errors a CLI user meets; others fall back to Kafka's name alone.
fn explanation(code: i16) -> Option<&'static str> {
    Some(match code {
        1 => "the offset is outside the partition's range (before the log start or past the end)",
        2 => "a record batch failed its CRC check",
        3 => "the topic or partition does not exist",
        7 => "the request timed out",
        10 => "the record batch is larger than the topic's max.message.bytes",
        15 => "the group coordinator is not available yet; try again",
        17 => "invalid topic name (use letters, digits, '.', '_' and '-', at most 249 characters)",
        19 => "fewer in-sync replicas than min.insync.replicas",
        22 => "the consumer's group generation is stale; it must rejoin",
        25 => "the group does not know this member",
        27 => "the group is rebalancing",
        32 => "a record timestamp is outside the topic's allowed range",
        36 => "a topic with that name already exists",
        37 => {
            "invalid number of partitions (it must be at least 1, and partitions can only be added)"
        }
        38 => "invalid replication factor (this cluster has fewer brokers)",
        40 => "invalid topic configuration",
        42 => "the request is invalid",
        45 => "the idempotent producer's sequence numbers are out of order",
        47 => "the producer epoch is stale (another producer with the same id took over)",
        68 => "the group still has active members",
        69 => "the group does not exist",
        86 => "the group still subscribes to this topic",
        // Kafka's `describe` fallback would only name these; a CLI user needs to know what to do.
        41 => "this broker is not the controller",
        16 => "this broker is not the group's coordinator",
        14 => "the group coordinator is still loading; try again",
        87 => "a record is invalid",
        105 => "no transaction coordinator knows this transactional id",
        _ => return None,
    })
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_words() {
        assert_eq!(
            describe(3),
            "UNKNOWN_TOPIC_OR_PARTITION (3): the topic or partition does not exist"
        );
        assert_eq!(
            describe(36),
            "TOPIC_ALREADY_EXISTS (36): a topic with that name already exists"
        );
        assert!(describe(58).starts_with("SASL_AUTHENTICATION_FAILED (58)"));
        assert_eq!(describe(0), "no error");
        assert_eq!(
            describe(-12345),
            "error code -12345 (not known to this client)"
        );
    }

    #[test]
    fn client_errors_name_the_item_and_the_code() {
        let e = strom_client::Error::Kafka {
            code: ResponseError::TopicAlreadyExists,
            context: "topic 'orders'".into(),
        };
        assert_eq!(
            explain(&e),
            "topic 'orders': TOPIC_ALREADY_EXISTS (36): a topic with that name already exists"
        );
        assert_eq!(
            explain(&strom_client::Error::Config("x".into())),
            "invalid configuration: x"
        );
    }
}
