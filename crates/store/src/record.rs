//! The journal's record format, and reading a segment back.
//!
//! A record is `[u32 len][u32 crc32][payload]`: both numbers little-endian, `len` the
//! payload's length, `crc32` its checksum (IEEE, as `crc32fast` computes it), the payload one
//! [`Change`] as JSON. JSON keeps the journal generic over `Change`: a new kind of change
//! (bookings, accounts) needs no change here, and a record can be read with `less`.
//!
//! Reading tells apart the two ways a record can be bad. A crash in the middle of a write
//! leaves a *torn tail*: the last record cut short, or its pages half-written so that its
//! checksum fails, and nothing valid after it. Anything else (a bad record with a valid one
//! somewhere after it) is *corruption*, which the server refuses to start on.

use std::fmt;

use state::Change;

/// Bytes before a record's payload.
pub(crate) const HEADER_LEN: usize = 8;

/// Longest payload a record may have. A change is a few hundred bytes; a length field
/// beyond this is damage, not a record.
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// Appends `change` to `out` as one record. On error `out` is left as it was.
pub(crate) fn encode(out: &mut Vec<u8>, change: &Change) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(err) = serde_json::to_writer(&mut *out, change) {
        out.truncate(start);
        return Err(err);
    }
    let payload = &out[start + HEADER_LEN..];
    // A change's JSON is far below 4 GiB.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Fewer bytes than a header are left.
    ShortHeader,
    /// The length field is 0 or over [`MAX_PAYLOAD_LEN`].
    Length(u32),
    /// The payload runs past the end of the file.
    ShortPayload,
    /// The checksum does not match the payload.
    Checksum,
    /// The checksum matches but the payload is not a change this version reads.
    Decode(String),
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::ShortHeader => write!(f, "the record header is cut short"),
            Bad::Length(len) => write!(f, "impossible record length {len}"),
            Bad::ShortPayload => write!(f, "the record is cut short"),
            Bad::Checksum => write!(f, "checksum mismatch"),
            Bad::Decode(err) => write!(
                f,
                "the checksum matches but it is not a change this version reads ({err})"
            ),
        }
    }
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte belongs to a valid record.
    Clean,
    /// From `offset` on, the bytes are a torn tail: cut them off.
    Torn {
        /// Where the torn record starts.
        offset: u64,
        /// What is wrong with it.
        bad: Bad,
    },
    /// The record at `offset` is bad and a valid one follows later: not a crash's doing.
    Corrupt {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        bad: Bad,
    },
}

/// A segment read back: its valid records (with their offsets), and how it ends.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The records before the first bad one, in order.
    pub(crate) records: Vec<(u64, Change)>,
    /// How the bytes end.
    pub(crate) end: End,
}

impl Scan {
    /// Where the valid records end.
    pub(crate) fn valid_len(&self, total: u64) -> u64 {
        match self.end {
            End::Clean => total,
            End::Torn { offset, .. } | End::Corrupt { offset, .. } => offset,
        }
    }
}

/// Reads every record of a segment, stopping at the first bad one.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match read_at(bytes, at) {
            Ok((change, next)) => {
                records.push((at as u64, change));
                at = next;
            }
            Err(bad) => {
                let offset = at as u64;
                // A decodable checksum is no crash's doing; neither is a valid record later.
                let end = if matches!(bad, Bad::Decode(_)) || valid_after(bytes, at) {
                    End::Corrupt { offset, bad }
                } else {
                    End::Torn { offset, bad }
                };
                return Scan { records, end };
            }
        }
    }
    Scan {
        records,
        end: End::Clean,
    }
}

/// The record at `at` and where the next one starts.
fn read_at(bytes: &[u8], at: usize) -> Result<(Change, usize), Bad> {
    let payload = checked_payload(bytes, at)?;
    let change = serde_json::from_slice(payload).map_err(|err| Bad::Decode(err.to_string()))?;
    Ok((change, at + HEADER_LEN + payload.len()))
}

/// The payload of the record at `at`, if its header is sane and its checksum matches.
fn checked_payload(bytes: &[u8], at: usize) -> Result<&[u8], Bad> {
    let header = bytes.get(at..at + HEADER_LEN).ok_or(Bad::ShortHeader)?;
    let field = |range: std::ops::Range<usize>| {
        let mut word = [0; 4];
        word.copy_from_slice(&header[range]);
        u32::from_le_bytes(word)
    };
    let (len, crc) = (field(0..4), field(4..8));
    let size = len as usize;
    if size == 0 || size > MAX_PAYLOAD_LEN {
        return Err(Bad::Length(len));
    }
    let start = at + HEADER_LEN;
    let payload = bytes.get(start..start + size).ok_or(Bad::ShortPayload)?;
    if crc32fast::hash(payload) != crc {
        return Err(Bad::Checksum);
    }
    Ok(payload)
}

/// How many records with a matching checksum `bytes` holds, wherever they start: what a
/// cut that keeps `bytes` aside loses.
pub(crate) fn readable_records(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while at + HEADER_LEN <= bytes.len() {
        match checked_payload(bytes, at) {
            Ok(payload) => {
                count += 1;
                at += HEADER_LEN + payload.len();
            }
            Err(_) => at += 1,
        }
    }
    count
}

/// Whether a record with a matching checksum starts anywhere after `at`. Only ever runs
/// past a bad record, over what is left of the file: a torn tail is shorter than one record.
fn valid_after(bytes: &[u8], at: usize) -> bool {
    (at + 1..bytes.len().saturating_sub(HEADER_LEN))
        .any(|from| checked_payload(bytes, from).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use state::{LotId, Plate};

    use super::*;

    fn changes() -> Vec<Change> {
        (0..4)
            .map(|n| Change::Reservation {
                lot: LotId::new("A").unwrap(),
                plate: Plate::parse(&format!("P{n}")).unwrap(),
                expires_at_ms: Some(1_700_000_000_000 + n),
                owner: None,
            })
            .chain([Change::Count {
                lot: LotId::new("B").unwrap(),
                counted: -2,
            }])
            .collect()
    }

    fn journal() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for change in changes() {
            starts.push(bytes.len() as u64);
            encode(&mut bytes, &change).unwrap();
        }
        (bytes, starts)
    }

    #[test]
    fn records_round_trip() {
        let (bytes, starts) = journal();
        let scan = scan(&bytes);
        assert_eq!(scan.end, End::Clean);
        let offsets: Vec<u64> = scan.records.iter().map(|(at, _)| *at).collect();
        assert_eq!(offsets, starts);
        let read: Vec<Change> = scan.records.into_iter().map(|(_, change)| change).collect();
        assert_eq!(read, changes());
    }

    #[test]
    fn a_cut_or_garbled_last_record_is_a_torn_tail() {
        let (bytes, starts) = journal();
        let last = *starts.last().unwrap() as usize;
        for cut in last + 1..bytes.len() {
            let scan = scan(&bytes[..cut]);
            assert!(
                matches!(scan.end, End::Torn { offset, .. } if offset == last as u64),
                "cut at {cut}: {:?}",
                scan.end
            );
            assert_eq!(scan.records.len(), starts.len() - 1);
        }
        let mut garbled = bytes.clone();
        *garbled.last_mut().unwrap() ^= 0x55;
        assert_eq!(
            scan(&garbled).end,
            End::Torn {
                offset: last as u64,
                bad: Bad::Checksum
            }
        );
        // A tail of zeros (a file extended but never written) is torn too.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 100]);
        assert!(matches!(
            scan(&zeros).end,
            End::Torn {
                bad: Bad::Length(0),
                ..
            }
        ));
    }

    #[test]
    fn a_bad_record_before_a_valid_one_is_corruption() {
        let (mut bytes, starts) = journal();
        let second = starts[1] as usize;
        bytes[second + HEADER_LEN + 3] ^= 0x20;
        let scan = scan(&bytes);
        assert_eq!(
            scan.end,
            End::Corrupt {
                offset: second as u64,
                bad: Bad::Checksum
            }
        );
        assert_eq!(scan.records.len(), 1);
        let cut = &bytes[second..];
        assert_eq!(readable_records(cut), starts.len() - 2);
    }

    #[test]
    fn a_valid_checksum_over_an_unknown_change_is_corruption() {
        let mut bytes = Vec::new();
        let payload = br#"{"kind":"booking","lot":"A"}"#;
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        assert!(matches!(
            scan(&bytes).end,
            End::Corrupt {
                offset: 0,
                bad: Bad::Decode(_)
            }
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_scan_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let scan = scan(&bytes);
            prop_assert!(scan.valid_len(bytes.len() as u64) <= bytes.len() as u64);
        }
    }
}
