//! The protocol between Strom nodes on the controller listener (`listeners=...,CONTROLLER://host:port`).
//!
//! A frame is `[u32 big-endian length of what follows][u8 kind][payload]`, at most [`MAX_FRAME`] bytes:
//!
//! | kind | frame | payload |
//! |---|---|---|
//! | 0 | `Hello` | JSON `{"cluster_id": "...", "node_id": 2, "voters": ["1@host:9093", ...]}`: first on every connection |
//! | 1 | `Refused` | JSON `{"message": "..."}`: the receiver will not talk to this sender, and closes |
//! | 2 | `Raft` | one raft-rs message, protobuf-encoded |
//! | 3 | `Request` | JSON `{"id": 7, "body": PeerRequest}`: to the active controller (or any voter, for status) |
//! | 4 | `Response` | JSON `{"id": 7, "body": PeerResponse}` |
//!
//! A connection starts with `Hello`; the receiver checks the cluster id (a node formatted for another cluster
//! is refused with a message naming both ids) and the voter list (nodes that disagree on who votes could elect
//! two leaders) before it reads anything else. Raft frames are one-way; requests
//! and responses match by id and may interleave.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use strom_metadata::{
    ControllerError, ControllerReply, ControllerRequest, MetadataImage, QuorumStatus, RaftMessage,
    RecordBatch,
};

/// Snapshots of a large image travel in one frame; 64 MiB holds hundreds of thousands of partitions.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    Controller(ControllerRequest),
    QuorumStatus,
    /// A broker-only node following the metadata log: the committed batches after `from` (the last index it
    /// applied), waiting up to `max_wait_ms` for one when there is none yet.
    FetchMetadata {
        from: u64,
        max_wait_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The reply and the log index its records committed at (0 when nothing was written).
    Controller(Result<(ControllerReply, u64), ControllerError>),
    QuorumStatus(QuorumStatus),
    Metadata(MetadataDelta),
}

/// What a broker-only node needs to catch up: the whole image when its position is older than the voter's
/// snapshot, then the committed batches after it, in order; and who leads, and where the voters are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataDelta {
    pub image: Option<MetadataImage>,
    /// (log index, batch); an empty batch is a leader's empty entry, which still advances the index.
    pub batches: Vec<(u64, RecordBatch)>,
    pub leader: Option<i32>,
    /// `id@host:port` of every voter.
    pub voters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello {
        cluster_id: String,
        node_id: i32,
        /// `controller.quorum.voters` as the sender has it, `id@host:port`, sorted.
        voters: Vec<String>,
    },
    Refused {
        message: String,
    },
    Raft(RaftMessage),
    Request {
        id: u64,
        body: PeerRequest,
    },
    Response {
        id: u64,
        body: PeerResponse,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("bad {kind} frame: {reason}")]
    Bad { kind: &'static str, reason: String },
}

#[derive(Serialize, Deserialize)]
struct Hello {
    cluster_id: String,
    node_id: i32,
    #[serde(default)]
    voters: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Refused {
    message: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

impl Frame {
    pub fn encode(&self) -> Bytes {
        let (kind, payload) = match self {
            Frame::Hello {
                cluster_id,
                node_id,
                voters,
            } => (
                0u8,
                serde_json::to_vec(&Hello {
                    cluster_id: cluster_id.clone(),
                    node_id: *node_id,
                    voters: voters.clone(),
                }),
            ),
            Frame::Refused { message } => (
                1,
                serde_json::to_vec(&Refused {
                    message: message.clone(),
                }),
            ),
            Frame::Raft(m) => (2, Ok(strom_metadata::encode_raft_message(m))),
            Frame::Request { id, body } => (3, serde_json::to_vec(&Envelope { id: *id, body })),
            Frame::Response { id, body } => (4, serde_json::to_vec(&Envelope { id: *id, body })),
        };
        let payload = payload.expect("frames always serialise");
        let mut out = BytesMut::with_capacity(5 + payload.len());
        out.put_u32(1 + payload.len() as u32);
        out.put_u8(kind);
        out.put_slice(&payload);
        out.freeze()
    }

    /// Takes one frame off the front of `buf`: `Ok(None)` means more bytes are needed. The length is checked
    /// before anything is buffered for the body.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let body = buf.split_to(len);
        let (kind, payload) = (body[0], &body[1..]);
        let json = |kind: &'static str| {
            move |e: serde_json::Error| WireError::Bad {
                kind,
                reason: e.to_string(),
            }
        };
        let frame = match kind {
            0 => {
                let h: Hello = serde_json::from_slice(payload).map_err(json("Hello"))?;
                Frame::Hello {
                    cluster_id: h.cluster_id,
                    node_id: h.node_id,
                    voters: h.voters,
                }
            }
            1 => {
                let r: Refused = serde_json::from_slice(payload).map_err(json("Refused"))?;
                Frame::Refused { message: r.message }
            }
            2 => Frame::Raft(
                strom_metadata::decode_raft_message(payload).map_err(|reason| WireError::Bad {
                    kind: "Raft",
                    reason,
                })?,
            ),
            3 => {
                let e: Envelope<PeerRequest> =
                    serde_json::from_slice(payload).map_err(json("Request"))?;
                Frame::Request {
                    id: e.id,
                    body: e.body,
                }
            }
            4 => {
                let e: Envelope<PeerResponse> =
                    serde_json::from_slice(payload).map_err(json("Response"))?;
                Frame::Response {
                    id: e.id,
                    body: e.body,
                }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames() -> Vec<Frame> {
        let raft = RaftMessage {
            to: 2,
            from: 1,
            term: 9,
            ..Default::default()
        };
        vec![
            Frame::Hello {
                cluster_id: "abc".into(),
                node_id: 3,
                voters: vec!["1@h:1".into(), "3@h:3".into()],
            },
            Frame::Refused {
                message: "wrong cluster".into(),
            },
            Frame::Raft(raft),
            Frame::Request {
                id: 7,
                body: PeerRequest::Controller(ControllerRequest::DeleteTopic { name: "t".into() }),
            },
            Frame::Response {
                id: 7,
                body: PeerResponse::Controller(Ok((ControllerReply::Done, 12))),
            },
        ]
    }

    #[test]
    fn every_frame_roundtrips_and_frames_split_anywhere_reassemble() {
        let mut all = BytesMut::new();
        for f in frames() {
            all.extend_from_slice(&f.encode());
        }
        for split in 0..all.len() {
            let mut buf = BytesMut::from(&all[..split]);
            let mut got = Vec::new();
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&all[split..]);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, frames(), "split at {split}");
        }
    }

    #[test]
    fn a_huge_length_is_refused_before_any_allocation() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(WireError::TooLarge(0xffff_ffff))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = Frame::decode(&mut buf);
        }
    }
}
