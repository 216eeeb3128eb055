//! Parsing of Java-client config values, shared by the producer and consumer configs so both report a bad value
//! the same way: `key=value: what was expected`.

use std::time::Duration;

use crate::error::Error;

pub(crate) fn invalid(key: &str, value: &str, why: &str) -> Error {
    Error::Config(format!("{key}={value}: {why}"))
}

/// A duration in milliseconds (`linger.ms`, `session.timeout.ms`, ...).
pub(crate) fn millis(key: &str, value: &str) -> Result<Duration, Error> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(key, value, "expected milliseconds"))
}

pub(crate) fn boolean(key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_name_the_key() {
        assert_eq!(millis("linger.ms", "5").unwrap(), Duration::from_millis(5));
        assert!(boolean("enable.auto.commit", "true").unwrap());
        let err = millis("linger.ms", "soon").unwrap_err().to_string();
        assert!(
            err.contains("linger.ms=soon") && err.contains("milliseconds"),
            "{err}"
        );
        assert!(boolean("enable.idempotence", "yes").is_err());
    }
}
