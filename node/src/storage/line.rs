//! One line of `log.jsonl`: the byte format of a single entry, both ways.
//!
//! ```text
//! {"crc":"574e94ba","index":7,"term":2,"command":"set x=1"}
//! {"crc":"4f36157d","index":8,"term":3,"noop":true}
//! {"crc":"0c1d2e3f","index":9,"term":3,"client":"a1b2","seq":4,"command":"set y=2"}
//! {"crc":"1a2b3c4d","index":10,"term":3,"config":[{"id":1,"voter":true},{"id":4,"voter":false,"meta":"node4@127.0.0.1:7004"}]}
//! ```
//!
//! The line is plain JSON (so `jq` reads the log), but the checksum sits in a fixed-width
//! header so it can be checked before any parsing: the CRC-32 (crc32fast) covers every byte
//! after the header up to and including the closing brace, without the newline. A line is
//! only trusted once its checksum matches, and only then parsed.

use super::error::LineProblem;
use replog_core::{ClientId, Entry, Index, Membership, Payload, Term};
use serde::Deserialize;
use std::io::Write as _;
use std::num::NonZeroU64;

/// `{"crc":"` + 8 hex digits + `",`.
const HEADER_LEN: usize = 18;
const HEADER_START: &[u8] = b"{\"crc\":\"";
const HEADER_END: &[u8] = b"\",";
const HEX_START: usize = HEADER_START.len();

/// Appends `entry` as one checksummed line, newline included, to `out`.
///
/// Writes straight into the caller's buffer: no allocation per entry once `out` has grown.
pub(crate) fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(UNSEALED_HEADER);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "\"index\":{},\"term\":{},",
        entry.index.0, entry.term.0
    );
    match &entry.payload {
        Payload::Noop => out.extend_from_slice(b"\"noop\":true"),
        Payload::Command(command) => {
            out.extend_from_slice(b"\"command\":");
            serde_json::to_writer(&mut *out, command).expect("a string always serializes");
        }
        Payload::Trim { before } => {
            let _ = write!(out, "\"trim_before\":{}", before.0);
        }
        Payload::Session {
            client,
            seq,
            command,
        } => {
            out.extend_from_slice(b"\"client\":");
            serde_json::to_writer(&mut *out, client.as_str()).expect("a string serializes");
            let _ = write!(out, ",\"seq\":{seq},\"command\":");
            serde_json::to_writer(&mut *out, command).expect("a string always serializes");
        }
        Payload::Config(membership) => {
            out.extend_from_slice(b"\"config\":");
            serde_json::to_writer(&mut *out, membership).expect("a configuration serializes");
        }
    }
    out.push(b'}');
    seal_record(out, start);
}

/// The placeholder header a checksummed record starts with; [`seal_record`] fills it in.
pub(crate) const UNSEALED_HEADER: &[u8] = b"{\"crc\":\"00000000\",";

/// Fills in the checksum of the record that starts at `out[start]` with
/// [`UNSEALED_HEADER`] and ends at the end of `out`, and ends it with a newline. Also
/// used for the segment index files, so that they are checked the same way.
pub(crate) fn seal_record(out: &mut Vec<u8>, start: usize) {
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    write_hex(crc, &mut out[start + HEX_START..start + HEX_START + 8]);
    out.push(b'\n');
}

/// Checks the checksum of one record (without its newline).
pub(crate) fn check_record(line: &[u8]) -> Result<(), LineProblem> {
    let stored = read_header(line).ok_or(LineProblem::MissingChecksum)?;
    let computed = crc32fast::hash(&line[HEADER_LEN..]);
    if stored != computed {
        return Err(LineProblem::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

/// Reads one line (without its newline) back into an entry, checksum first.
pub(crate) fn decode_line(line: &[u8]) -> Result<Entry, LineProblem> {
    check_record(line)?;
    let record: LineRecord =
        serde_json::from_slice(line).map_err(|error| LineProblem::Parse(error.to_string()))?;
    record.into_entry()
}

/// The fields of a line as serde sees them; turned into an `Entry` only if well-formed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineRecord {
    #[allow(dead_code)] // Already checked from the raw bytes; present so the JSON is complete.
    crc: String,
    index: u64,
    term: u64,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    noop: Option<bool>,
    #[serde(default)]
    trim_before: Option<u64>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    config: Option<Membership>,
}

impl LineRecord {
    fn into_entry(self) -> Result<Entry, LineProblem> {
        let session = match (self.client, self.seq) {
            (None, None) => None,
            (Some(client), Some(seq)) => {
                let client =
                    ClientId::new(client).map_err(|error| LineProblem::Parse(error.to_string()))?;
                let seq = NonZeroU64::new(seq)
                    .ok_or_else(|| LineProblem::Parse("\"seq\" must be positive".into()))?;
                Some((client, seq))
            }
            _ => {
                return Err(LineProblem::Parse(
                    "\"client\" and \"seq\" go together".to_string(),
                ))
            }
        };
        if let Some(membership) = self.config {
            if session.is_some()
                || self.command.is_some()
                || self.noop.is_some()
                || self.trim_before.is_some()
            {
                return Err(LineProblem::Parse(
                    "a \"config\" line holds nothing else".to_string(),
                ));
            }
            return Ok(Entry {
                index: Index(self.index),
                term: Term(self.term),
                payload: Payload::Config(membership),
            });
        }
        let payload = match (self.command, self.noop, self.trim_before) {
            (Some(command), None, None) => match session {
                Some((client, seq)) => Payload::Session {
                    client,
                    seq,
                    command: command.into(),
                },
                None => Payload::Command(command.into()),
            },
            _ if session.is_some() => {
                return Err(LineProblem::Parse(
                    "\"client\" and \"seq\" go with a \"command\"".to_string(),
                ))
            }
            (None, Some(true), None) => Payload::Noop,
            (None, None, Some(before)) if before > 0 => Payload::Trim {
                before: Index(before),
            },
            _ => return Err(LineProblem::Parse(
                "expected exactly one of \"command\", \"noop\":true or a positive \"trim_before\""
                    .to_string(),
            )),
        };
        Ok(Entry {
            index: Index(self.index),
            term: Term(self.term),
            payload,
        })
    }
}

/// How many line headers `bytes` holds. Inside a well-formed line the header's quotes
/// would be escaped, so more than one means several lines ran together.
pub(crate) fn count_headers(bytes: &[u8]) -> usize {
    bytes
        .windows(HEADER_START.len())
        .filter(|window| *window == HEADER_START)
        .count()
}

/// The checksum in the header, if the header is there and well-formed.
fn read_header(line: &[u8]) -> Option<u32> {
    if line.len() < HEADER_LEN
        || !line.starts_with(HEADER_START)
        || &line[HEX_START + 8..HEADER_LEN] != HEADER_END
    {
        return None;
    }
    let mut value = 0u32;
    for &digit in &line[HEX_START..HEX_START + 8] {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u32::from(nibble);
    }
    Some(value)
}

fn write_hex(value: u32, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (position, slot) in out.iter_mut().enumerate() {
        let shift = 28 - 4 * position;
        *slot = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, payload: Payload) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload,
        }
    }

    fn encode(entry: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(entry, &mut out);
        out
    }

    #[test]
    fn command_and_noop_lines_round_trip() {
        let awkward = "quote \" backslash \\ newline \n tab \t unicode é \u{1F600} nul \0";
        for original in [
            entry(1, 1, Payload::Noop),
            entry(7, 2, Payload::Command("set x=1".into())),
            entry(8, 3, Payload::Command("".into())),
            entry(9, 3, Payload::Command(awkward.into())),
            entry(u64::MAX, u64::MAX, Payload::Command(",\"crc\":\"".into())),
        ] {
            let line = encode(&original);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
            assert_eq!(decode_line(&line[..line.len() - 1]), Ok(original));
        }
    }

    proptest::proptest! {
        /// Recovery relies on this: a zero byte in the file is one no write put there
        /// (serde_json escapes control characters), and one newline ends each line.
        #[test]
        fn no_line_holds_a_zero_byte_or_an_inner_newline(
            command in proptest::prelude::any::<String>(),
            index in 1..u64::MAX,
            term in 1..u64::MAX,
        ) {
            let line = encode(&entry(index, term, Payload::Command(command.into())));
            proptest::prop_assert!(!line.contains(&0));
            proptest::prop_assert_eq!(line.iter().position(|&byte| byte == b'\n'), Some(line.len() - 1));
        }
    }

    #[test]
    fn line_is_plain_json_with_checksum_first() {
        let line = encode(&entry(7, 2, Payload::Command("set x=1".into())));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with("{\"crc\":\""));
        assert!(text.ends_with(",\"index\":7,\"term\":2,\"command\":\"set x=1\"}\n"));
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["index"], 7);
    }

    #[test]
    fn documented_example_lines_are_exact() {
        let command = entry(7, 2, Payload::Command("set x=1".into()));
        let noop = entry(8, 3, Payload::Noop);
        assert_eq!(
            encode(&command),
            b"{\"crc\":\"574e94ba\",\"index\":7,\"term\":2,\"command\":\"set x=1\"}\n"
        );
        assert_eq!(
            encode(&noop),
            b"{\"crc\":\"4f36157d\",\"index\":8,\"term\":3,\"noop\":true}\n"
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let line = encode(&entry(3, 1, Payload::Command("abc".into())));
        let body = &line[..line.len() - 1];
        for byte in 0..body.len() {
            for bit in 0..8 {
                let mut damaged = body.to_vec();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode_line(&damaged).is_err(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let line = encode(&entry(3, 1, Payload::Command("abc".into())));
        let body = &line[..line.len() - 1];
        for length in 0..body.len() {
            assert!(
                decode_line(&body[..length]).is_err(),
                "prefix {length} accepted"
            );
        }
    }

    #[test]
    fn valid_checksum_over_bad_content_is_a_parse_error() {
        let content = b"\"index\":1,\"term\":1,\"command\":\"a\",\"noop\":true}";
        let mut line = b"{\"crc\":\"00000000\",".to_vec();
        line.extend_from_slice(content);
        write_hex(
            crc32fast::hash(content),
            &mut line[HEX_START..HEX_START + 8],
        );
        assert!(matches!(decode_line(&line), Err(LineProblem::Parse(_))));
    }
}
