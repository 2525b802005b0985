//! The log record format: what the KV service puts into a raft-core entry.
//!
//! A record is one format-version byte, then the [`Record`] in postcard. The
//! leader stamps every record it proposes with its clock (thesis §6.3), so
//! every replica expires sessions by the same time: the clock carried in the
//! log. A record that does not decode (corrupt, or written by a newer
//! version) is refused with a [`RecordError`], the same on every replica.
//!
//! Versions: 1 has `Register`, `Request` and `Read`; 2 adds `PlainWrite` (a
//! write without a session) and is what this code writes. Both are read, so
//! logs written by version 1 still apply; a `PlainWrite` behind version 1 is
//! malformed, and a version-1 reader refuses every version-2 record.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::{Seq, SessionId};
use crate::op::Op;

/// The record format this code writes (and the newest it reads).
pub const RECORD_VERSION: u8 = 2;
/// The oldest record format this code reads.
pub const OLDEST_RECORD_VERSION: u8 = 1;

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The proposing leader's clock, in milliseconds. The state machine's
    /// clock is the largest stamp applied so far, so it never goes back.
    pub stamp_ms: u64,
    /// What to do.
    pub body: RecordBody,
}

/// What a record asks the state machine to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordBody {
    /// Open a session; its id is this record's log index (thesis §6.3).
    Register,
    /// A client's request, applied at most once per `(session, seq)`.
    Request {
        session: SessionId,
        seq: Seq,
        op: Op,
    },
    /// A read through the log, with no session: answered from the state at
    /// the record's index, changing nothing (the baseline of thesis §6.4).
    Read { op: Op },
    /// A write with no session, applied every time it appears in the log (no
    /// duplicate check). Since record version 2.
    PlainWrite { op: Op },
}

/// Why a record did not decode. Carries no free text, so that every replica
/// answers with exactly the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum RecordError {
    /// No bytes at all.
    #[error("empty record")]
    Empty,
    /// Written by a format version this code does not read.
    #[error("record format version {found} (this build reads 1 to {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    /// The bytes after the version byte are not a record.
    #[error("malformed record")]
    Malformed,
    /// A record followed by extra bytes.
    #[error("trailing bytes after the record")]
    TrailingBytes,
}

/// Encodes a record: the version byte, then postcard.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Serialising plain owned data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(record).expect("a record always serialises"));
    out
}

/// Decodes a record written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    if !(OLDEST_RECORD_VERSION..=RECORD_VERSION).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            found: version,
            supported: RECORD_VERSION,
        });
    }
    let (record, rest) =
        postcard::take_from_bytes::<Record>(body).map_err(|_| RecordError::Malformed)?;
    if version == 1 && matches!(record.body, RecordBody::PlainWrite { .. }) {
        // Version 1 had no such record: the bytes are not a version-1 record.
        return Err(RecordError::Malformed);
    }
    if !rest.is_empty() {
        return Err(RecordError::TrailingBytes);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Record {
        Record {
            stamp_ms: 1_700,
            body: RecordBody::Request {
                session: 3,
                seq: 9,
                op: Op::Cas {
                    key: b"k".to_vec(),
                    expected: None,
                    new: b"v".to_vec(),
                },
            },
        }
    }

    #[test]
    fn round_trip() {
        for record in [
            request(),
            Record {
                stamp_ms: 0,
                body: RecordBody::Register,
            },
            Record {
                stamp_ms: u64::MAX,
                body: RecordBody::Read {
                    op: Op::Get { key: vec![] },
                },
            },
            Record {
                stamp_ms: 5,
                body: RecordBody::PlainWrite {
                    op: Op::Append {
                        key: b"k".to_vec(),
                        value: vec![0xff],
                    },
                },
            },
        ] {
            let bytes = encode(&record);
            assert_eq!(bytes[0], RECORD_VERSION);
            assert_eq!(decode(&bytes), Ok(record));
        }
    }

    #[test]
    fn reads_version_one_but_not_a_plain_write_behind_it() {
        // Version 1 and 2 share the layout of the records version 1 had.
        let mut old = encode(&request());
        old[0] = 1;
        assert_eq!(decode(&old), Ok(request()));
        let mut plain = encode(&Record {
            stamp_ms: 1,
            body: RecordBody::PlainWrite {
                op: Op::Delete { key: vec![] },
            },
        });
        plain[0] = 1;
        assert_eq!(decode(&plain), Err(RecordError::Malformed));
        assert_eq!(
            decode(&[0, 0, 0]),
            Err(RecordError::UnsupportedVersion {
                found: 0,
                supported: RECORD_VERSION
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let mut bytes = encode(&request());
        assert_eq!(decode(&[]), Err(RecordError::Empty));
        assert_eq!(decode(&[RECORD_VERSION]), Err(RecordError::Malformed));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(RecordError::Malformed)
        );
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(RecordError::TrailingBytes));
        bytes[0] = RECORD_VERSION + 1;
        assert_eq!(
            decode(&bytes),
            Err(RecordError::UnsupportedVersion {
                found: RECORD_VERSION + 1,
                supported: RECORD_VERSION
            })
        );
        // An unknown enum tag, and a length prefix far past the end.
        assert_eq!(decode(&[RECORD_VERSION, 0, 9]), Err(RecordError::Malformed));
        assert_eq!(
            decode(&[RECORD_VERSION, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(RecordError::Malformed)
        );
    }
}
