//! Serdes: how keys and values become bytes on topics and in state stores, and back.
//!
//! Every type a topology writes to a topic or a store names its serde through [`DefaultSerde`]. The built-ins
//! keep Kafka's byte formats, so a Java or librdkafka application reading the same topics agrees on the bytes:
//! strings are UTF-8, `i64`/`i32`/`f64` are big-endian (Kafka's `LongSerde`, `IntegerSerde`, `DoubleSerde`),
//! [`Json<T>`] is serde_json. A null (absent) key or value deserializes only into `()` or `Option<T>`: a plain
//! `String` serde meeting a null is a deserialization error, handled by `default.deserialization.exception.handler`.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes did not deserialize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SerdeError(pub String);

/// Turns values of `T` into bytes (`None` = null on the wire) and back.
pub trait Serde<T>: Send + Sync + 'static {
    fn serialize(&self, value: &T) -> Option<Bytes>;
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, SerdeError>;

    /// The bytes a sink partitions a key of this type by, when not its serialized form (a windowed key is
    /// partitioned by its inner key, as Kafka's `WindowedStreamPartitioner`, so one key's windows share a
    /// partition).
    fn partition_key(&self, _value: &T) -> Option<Bytes> {
        None
    }

    /// Whether `value` serializes to null (cheaper than serializing it): aggregations drop records whose key
    /// is null, as Kafka's.
    fn is_null(&self, _value: &T) -> bool {
        false
    }

    /// Deserializes bytes the caller owns (a source's record): serdes that keep the bytes take them as they
    /// are instead of copying.
    fn deserialize_owned(&self, data: Option<Bytes>) -> Result<T, SerdeError> {
        self.deserialize(data.as_deref())
    }
}

/// A shared serde.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// Types with a serde of their own, used wherever a topology needs bytes (sinks, stores, repartition topics).
/// Implement it for your own types, or wrap them in [`Json`].
pub trait DefaultSerde: Sized + 'static {
    fn serde() -> SerdeRef<Self>;
}

fn present<'a>(data: Option<&'a [u8]>, what: &str) -> Result<&'a [u8], SerdeError> {
    data.ok_or_else(|| {
        SerdeError(format!(
            "null where a {what} was expected (use Option<{what}> or () for nullable data)"
        ))
    })
}

/// UTF-8 strings (Kafka's `StringSerde`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(value.as_bytes()))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<String, SerdeError> {
        let data = present(data, "String")?;
        String::from_utf8(data.to_vec()).map_err(|e| SerdeError(format!("not UTF-8: {e}")))
    }
}

impl DefaultSerde for String {
    fn serde() -> SerdeRef<Self> {
        Arc::new(StringSerde)
    }
}

/// Raw bytes, as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Bytes> for BytesSerde {
    fn serialize(&self, value: &Bytes) -> Option<Bytes> {
        Some(value.clone())
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Bytes, SerdeError> {
        Ok(Bytes::copy_from_slice(present(data, "Bytes")?))
    }

    fn deserialize_owned(&self, data: Option<Bytes>) -> Result<Bytes, SerdeError> {
        data.ok_or_else(|| {
            SerdeError(
                "null where a Bytes was expected (use Option<Bytes> or () for nullable data)"
                    .into(),
            )
        })
    }
}

impl DefaultSerde for Bytes {
    fn serde() -> SerdeRef<Self> {
        Arc::new(BytesSerde)
    }
}

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(value))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        Ok(present(data, "Vec<u8>")?.to_vec())
    }
}

impl DefaultSerde for Vec<u8> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(BytesSerde)
    }
}

/// Fixed-width big-endian numbers (Kafka's `LongSerde`, `IntegerSerde`, `DoubleSerde`, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct BigEndian;

macro_rules! big_endian {
    ($($t:ty),*) => {$(
        impl Serde<$t> for BigEndian {
            fn serialize(&self, value: &$t) -> Option<Bytes> {
                Some(Bytes::copy_from_slice(&value.to_be_bytes()))
            }

            fn deserialize(&self, data: Option<&[u8]>) -> Result<$t, SerdeError> {
                let data = present(data, stringify!($t))?;
                let bytes = data.try_into().map_err(|_| {
                    SerdeError(format!(
                        "{} bytes for a {} (needs {})",
                        data.len(),
                        stringify!($t),
                        std::mem::size_of::<$t>()
                    ))
                })?;
                Ok(<$t>::from_be_bytes(bytes))
            }
        }

        impl DefaultSerde for $t {
            fn serde() -> SerdeRef<Self> {
                Arc::new(BigEndian)
            }
        }
    )*};
}

big_endian!(i16, i32, i64, u32, u64, f32, f64);

/// No data: serializes to null and accepts anything (the key type of keyless topics).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Option<Bytes> {
        None
    }

    fn is_null(&self, _: &()) -> bool {
        true
    }

    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

impl DefaultSerde for () {
    fn serde() -> SerdeRef<Self> {
        Arc::new(UnitSerde)
    }
}

/// `None` is null on the wire (a tombstone, as a value); `Some` uses the inner serde.
pub struct Nullable<T>(SerdeRef<T>);

impl<T: 'static> Serde<Option<T>> for Nullable<T> {
    fn serialize(&self, value: &Option<T>) -> Option<Bytes> {
        value.as_ref().and_then(|v| self.0.serialize(v))
    }

    fn is_null(&self, value: &Option<T>) -> bool {
        value.as_ref().is_none_or(|v| self.0.is_null(v))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize(Some(d))).transpose()
    }

    fn deserialize_owned(&self, data: Option<Bytes>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize_owned(Some(d))).transpose()
    }
}

impl<T: DefaultSerde> DefaultSerde for Option<T> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(Nullable(T::serde()))
    }
}

/// A value carried as JSON (serde_json). `Json<Order>` on a stream reads and writes `Order` as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Json<T>(pub T);

struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned + 'static> Serde<Json<T>> for JsonSerde<T> {
    fn serialize(&self, value: &Json<T>) -> Option<Bytes> {
        // Serializing plain data into a Vec cannot fail; a type whose Serialize impl fails is a programming
        // error the caller learns about at once.
        Some(Bytes::from(
            serde_json::to_vec(&value.0).expect("value serializes to JSON"),
        ))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Json<T>, SerdeError> {
        let data = present(data, "JSON value")?;
        serde_json::from_slice(data)
            .map(Json)
            .map_err(|e| SerdeError(format!("invalid JSON: {e}")))
    }
}

impl<T: Serialize + DeserializeOwned + 'static> DefaultSerde for Json<T> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(JsonSerde(PhantomData))
    }
}

/// Big-endian length-prefixed pairs: the serde of tuples, used by joins and aggregations of pairs.
struct PairSerde<A, B>(SerdeRef<A>, SerdeRef<B>);

pub(crate) fn put_part(out: &mut Vec<u8>, part: Option<Bytes>) {
    match part {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(&b);
        }
    }
}

pub(crate) fn take_part<'a>(data: &mut &'a [u8]) -> Result<Option<&'a [u8]>, SerdeError> {
    let short = || SerdeError("pair cut short".into());
    let len = i32::from_be_bytes(data.get(..4).ok_or_else(short)?.try_into().unwrap());
    *data = &data[4..];
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    let part = data.get(..len).ok_or_else(short)?;
    *data = &data[len..];
    Ok(Some(part))
}

impl<A: 'static, B: 'static> Serde<(A, B)> for PairSerde<A, B> {
    fn serialize(&self, value: &(A, B)) -> Option<Bytes> {
        let mut out = Vec::new();
        put_part(&mut out, self.0.serialize(&value.0));
        put_part(&mut out, self.1.serialize(&value.1));
        Some(Bytes::from(out))
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<(A, B), SerdeError> {
        let mut data = present(data, "pair")?;
        let a = self.0.deserialize(take_part(&mut data)?)?;
        let b = self.1.deserialize(take_part(&mut data)?)?;
        if !data.is_empty() {
            return Err(SerdeError(format!("{} bytes after a pair", data.len())));
        }
        Ok((a, b))
    }
}

impl<A: DefaultSerde, B: DefaultSerde> DefaultSerde for (A, B) {
    fn serde() -> SerdeRef<Self> {
        Arc::new(PairSerde(A::serde(), B::serde()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: DefaultSerde + PartialEq + std::fmt::Debug>(value: T) {
        let serde = T::serde();
        let bytes = serde.serialize(&value);
        assert_eq!(serde.deserialize(bytes.as_deref()).unwrap(), value);
    }

    #[test]
    fn built_in_serdes_roundtrip_and_keep_kafka_byte_formats() {
        roundtrip("héllo".to_string());
        roundtrip(-5i64);
        roundtrip(7i32);
        roundtrip(2.5f64);
        roundtrip(Some(3i64));
        roundtrip(None::<i64>);
        roundtrip(("a".to_string(), 9i64));
        roundtrip(Json(vec![1, 2, 3]));
        assert_eq!(
            i64::serde().serialize(&1).unwrap().as_ref(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(None::<i64>.map(|_| ()), None);
        assert!(Option::<i64>::serde().serialize(&None).is_none());
    }

    #[test]
    fn bad_bytes_are_errors_that_name_the_problem() {
        let e = i64::serde().deserialize(Some(&[1, 2])).unwrap_err();
        assert!(e.0.contains("2 bytes for a i64"), "{e}");
        let e = String::serde().deserialize(None).unwrap_err();
        assert!(e.0.contains("null"), "{e}");
        let e = String::serde().deserialize(Some(&[0xff])).unwrap_err();
        assert!(e.0.contains("UTF-8"), "{e}");
        assert!(<(String, i64)>::serde().deserialize(Some(&[0, 0])).is_err());
        assert!(Json::<Vec<i32>>::serde().deserialize(Some(b"[1,")).is_err());
    }
}
