//! The on-disk format of a spool segment (documented for outside readers in
//! `docs/spool.md`). Pure functions: encoding, and a reader that survives torn tails and
//! corrupt bytes.
//!
//! ```text
//! segment = header record*
//! header  = "BHSPOOL\x01" (8) | token_hash u64 LE | created_ms i64 LE
//!           | replayed_to u64 LE                                            (32 bytes)
//! record  = 0xB5 0x5B | endpoint u8 | flags u8 | len u32 LE | created_ms i64 LE
//!           | crc32 u32 LE | payload (len bytes of JSON)                      (20 + len)
//! ```
//!
//! The CRC-32 (IEEE) covers everything in the record after the two sync bytes except the
//! CRC itself, and the payload. The sync bytes let a reader find the next record after a
//! corrupt one. `replayed_to` is the one field ever rewritten in place: the offset up to
//! which the segment's records were replayed and resolved, so a later reader starts there.

use crate::message::Endpoint;

pub(crate) const MAGIC: &[u8; 8] = b"BHSPOOL\x01";
pub(crate) const HEADER_LEN: usize = 32;
/// Where `replayed_to` is in the header.
pub(crate) const CURSOR_OFFSET: u64 = 24;
pub(crate) const RECORD_HEADER_LEN: usize = 20;
const SYNC: [u8; 2] = [0xB5, 0x5B];
/// No record is larger (`max_event_bytes` is at most 10 MB): a larger length is corrupt.
pub(crate) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// FNV-1a of the project token: which project a segment belongs to, without storing the
/// token twice.
pub fn token_hash(token: &str) -> u64 {
    token.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn header(token_hash: u64, created_ms: i64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&token_hash.to_le_bytes());
    out[16..24].copy_from_slice(&created_ms.to_le_bytes());
    out[24..32].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
    out
}

/// A segment's header fields that a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub token_hash: u64,
    /// Where reading starts: records before it were replayed already (never before the
    /// first record, never past the end of `bytes`).
    pub replayed_to: usize,
}

/// The header of a segment, if `bytes` starts with a valid one.
pub fn parse_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let field =
        |at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes[at..at + 8].try_into().ok()?)) };
    let replayed_to = usize::try_from(field(24)?).unwrap_or(usize::MAX);
    Some(Header {
        token_hash: field(8)?,
        replayed_to: replayed_to.clamp(HEADER_LEN, bytes.len()),
    })
}

pub fn endpoint_code(endpoint: Endpoint) -> u8 {
    match endpoint {
        Endpoint::Track => 1,
        Endpoint::Engage => 2,
        Endpoint::Groups => 3,
        Endpoint::Import => 4,
    }
}

fn endpoint_of(code: u8) -> Option<Endpoint> {
    Some(match code {
        1 => Endpoint::Track,
        2 => Endpoint::Engage,
        3 => Endpoint::Groups,
        4 => Endpoint::Import,
        _ => return None,
    })
}

/// The bytes a record of `payload_len` takes on disk.
pub fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

fn crc(fields: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(fields);
    h.update(payload);
    h.finalize()
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, endpoint: Endpoint, created_ms: i64, payload: &[u8]) {
    let mut fields = [0u8; 14];
    fields[0] = endpoint_code(endpoint);
    fields[2..6].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    fields[6..14].copy_from_slice(&created_ms.to_le_bytes());
    out.reserve(record_len(payload.len()));
    out.extend_from_slice(&SYNC);
    out.extend_from_slice(&fields);
    out.extend_from_slice(&crc(&fields, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub endpoint: Endpoint,
    pub created_ms: i64,
    pub payload: &'a [u8],
}

/// What a reader found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Record(Record<'a>),
    /// Bytes that are not a valid record, up to the next valid one (or the end).
    Corrupt,
    /// A record cut off by the end of the segment (a write the process did not finish).
    Torn,
}

enum Parse<'a> {
    Ok(Record<'a>, usize),
    Short,
    Bad,
}

fn parse(buf: &[u8]) -> Parse<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return if SYNC.starts_with(&buf[..buf.len().min(2)]) {
            Parse::Short
        } else {
            Parse::Bad
        };
    }
    if buf[..2] != SYNC {
        return Parse::Bad;
    }
    let fields = &buf[2..16];
    let len = u32::from_le_bytes([fields[2], fields[3], fields[4], fields[5]]) as usize;
    let Some(endpoint) = endpoint_of(fields[0]) else {
        return Parse::Bad;
    };
    if len > MAX_PAYLOAD {
        return Parse::Bad;
    }
    if buf.len() < RECORD_HEADER_LEN + len {
        return Parse::Short;
    }
    let stored = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if crc(fields, payload) != stored {
        return Parse::Bad;
    }
    let mut created = [0u8; 8];
    created.copy_from_slice(&fields[6..14]);
    Parse::Ok(
        Record {
            endpoint,
            created_ms: i64::from_le_bytes(created),
            payload,
        },
        RECORD_HEADER_LEN + len,
    )
}

/// Reads the records of a segment body (after its header), in order.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    /// Where the next item starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next valid record at or after `from`, if any.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut at = from;
        while at + 1 < self.buf.len() {
            let offset = self.buf[at..].windows(2).position(|w| w == SYNC)?;
            at += offset;
            if let Parse::Ok(..) = parse(&self.buf[at..]) {
                return Some(at);
            }
            at += 1;
        }
        None
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        match parse(rest) {
            Parse::Ok(record, len) => {
                self.pos += len;
                Some(Item::Record(record))
            }
            // Cut off at the end: only a torn tail if nothing valid follows.
            Parse::Short if self.resync(self.pos + 1).is_none() => {
                self.pos = self.buf.len();
                Some(Item::Torn)
            }
            Parse::Short | Parse::Bad => {
                self.pos = self.resync(self.pos + 1).unwrap_or(self.buf.len());
                Some(Item::Corrupt)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(&mut out, Endpoint::Track, 1000 + i as i64, p.as_bytes());
        }
        out
    }

    fn read(buf: &[u8]) -> Vec<String> {
        Reader::new(buf, 0)
            .map(|item| match item {
                Item::Record(r) => String::from_utf8(r.payload.to_vec()).unwrap(),
                Item::Corrupt => "<corrupt>".into(),
                Item::Torn => "<torn>".into(),
            })
            .collect()
    }

    #[test]
    fn round_trips_records_and_header() {
        let buf = segment(&[r#"{"a":1}"#, "", r#"{"b":2}"#]);
        assert_eq!(read(&buf), [r#"{"a":1}"#, "", r#"{"b":2}"#]);
        let first = Reader::new(&buf, 0).next().unwrap();
        assert_eq!(
            first,
            Item::Record(Record {
                endpoint: Endpoint::Track,
                created_ms: 1000,
                payload: br#"{"a":1}"#
            })
        );
        let mut h = header(token_hash("tok"), 5).to_vec();
        let fresh = Header {
            token_hash: token_hash("tok"),
            replayed_to: HEADER_LEN,
        };
        assert_eq!(parse_header(&h), Some(fresh));
        assert_eq!(parse_header(&h[..10]), None);
        // A cursor past the end (a segment cut short) reads as the end; before the first
        // record as the first record.
        h.extend_from_slice(&[0u8; 8]);
        h[24..32].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(parse_header(&h).unwrap().replayed_to, HEADER_LEN + 8);
        h[24..32].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(parse_header(&h).unwrap().replayed_to, HEADER_LEN);
        assert_ne!(token_hash("tok"), token_hash("tol"));
    }

    #[test]
    fn a_torn_tail_is_reported_once_and_ends_the_segment() {
        let buf = segment(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        for cut in 1..record_len(7) {
            let torn = &buf[..buf.len() - cut];
            assert_eq!(read(torn), [r#"{"a":1}"#, "<torn>"], "cut {cut}");
        }
    }

    #[test]
    fn every_flipped_byte_costs_at_most_its_record() {
        let payloads = [r#"{"a":1}"#, r#"{"bb":22}"#, r#"{"c":3}"#];
        let clean = segment(&payloads);
        for at in 0..clean.len() {
            for bit in [0x01u8, 0x80] {
                let mut buf = clean.clone();
                buf[at] ^= bit;
                let got = read(&buf);
                let good: Vec<_> = got.iter().filter(|s| !s.starts_with('<')).collect();
                // Every record read back is one that was written; at most one was lost.
                assert!(
                    good.iter().all(|g| payloads.contains(&g.as_str())),
                    "{at}: {got:?}"
                );
                assert!(good.len() >= payloads.len() - 1, "{at}: {got:?}");
                assert!(
                    got.len() > good.len(),
                    "the damage is reported: {at} {got:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_corrupt_never_a_panic() {
        assert_eq!(read(b"hello world, not a record at all"), ["<corrupt>"]);
        assert_eq!(read(&[0xB5]), ["<torn>"]);
        let mut buf = segment(&[r#"{"a":1}"#]);
        buf.extend_from_slice(b"junk");
        buf.extend_from_slice(&segment(&[r#"{"z":9}"#]));
        assert_eq!(read(&buf), [r#"{"a":1}"#, "<corrupt>", r#"{"z":9}"#]);
    }
}
