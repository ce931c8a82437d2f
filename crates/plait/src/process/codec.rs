//! The frames between the runtime and its worker processes.
//!
//! A frame is a little-endian `u32` length (of what follows it), a kind byte, a `u64`
//! request id and a body. Arguments and results inside bodies are `postcard` (serde's
//! compact binary form); the frame layout around them is written by hand so that a result
//! travels as one slice of the read buffer, never re-encoded.
//!
//! | kind | from | body |
//! |---|---|---|
//! | `Init` | runtime | `postcard` of [`Init`] |
//! | `Hello` | worker | process id: `u32` |
//! | `Call` | runtime | flags `u8`, name length `u16`, name, arguments |
//! | `Batch` | runtime | name length `u16`, name, count `u32`, then per item length `u32` and arguments |
//! | `Started` | worker | empty: the call with this id has started (sent only when asked) |
//! | `Done` | worker | an outcome: tag `u8`, then the result or the failure's message |
//! | `BatchDone` | worker | count `u32`, then per item tag `u8`, length `u32`, bytes |
//!
//! Decoding never panics and never trusts a length: every malformed input is a
//! [`CodecError`] (a property test feeds it arbitrary bytes).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::registry::Failure;

/// Bytes before the body: length, kind, id.
pub(crate) const HEADER: usize = 4 + 1 + 8;

/// Call flag: send a `Started` frame before running (the runtime times the call).
pub(crate) const REPORT_START: u8 = 1;

/// Written by a worker before its first frame, so that the runtime can skip whatever the
/// binary printed before `plait::init` (a test harness's banner, say).
pub(crate) const MAGIC: &[u8; 8] = b"\0plait\x01\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Init = 1,
    Hello = 2,
    Call = 3,
    Batch = 4,
    Started = 5,
    Done = 6,
    BatchDone = 7,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Init,
            2 => Kind::Hello,
            3 => Kind::Call,
            4 => Kind::Batch,
            5 => Kind::Started,
            6 => Kind::Done,
            7 => Kind::BatchDone,
            _ => return None,
        })
    }
}

/// A malformed frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CodecError(pub(crate) String);

fn error<T>(message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(message.into()))
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) id: u64,
    pub(crate) body: Bytes,
}

/// What a worker needs before it serves: sent first, answered by `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Init {
    /// The largest frame either side may send.
    pub(crate) frame_limit: u64,
    /// Address-space limit for the worker, in bytes.
    pub(crate) memory_limit: Option<u64>,
    /// A registered task to run once before serving, and its encoded arguments.
    pub(crate) initializer: Option<(String, Vec<u8>)>,
}

/// Takes one whole frame off the front of `buf`, if it holds one.
///
/// # Errors
///
/// A frame longer than `limit`, shorter than a header, or of an unknown kind.
pub(crate) fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < HEADER - 4 {
        return error(format!("a frame of {len} bytes is shorter than its header"));
    }
    if len > limit.saturating_add(HEADER) {
        return error(format!(
            "a frame of {len} bytes is over the limit of {limit} bytes"
        ));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len);
    frame.advance(4);
    let kind_byte = frame.get_u8();
    let Some(kind) = Kind::from_u8(kind_byte) else {
        return error(format!("unknown frame kind {kind_byte}"));
    };
    let id = frame.get_u64_le();
    Ok(Some(Frame {
        kind,
        id,
        body: frame.freeze(),
    }))
}

/// Writes a frame header for a body of `body_len` bytes.
///
/// # Panics
///
/// If the frame is longer than `u32::MAX`; callers check sizes against the frame limit
/// (far below it) first.
pub(crate) fn put_header(out: &mut impl BufMut, kind: Kind, id: u64, body_len: usize) {
    let len = u32::try_from(HEADER - 4 + body_len).expect("frame size checked against the limit");
    out.put_u32_le(len);
    out.put_u8(kind as u8);
    out.put_u64_le(id);
}

/// A whole frame with `body`.
pub(crate) fn frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    put_header(&mut out, kind, id, body.len());
    out.extend_from_slice(body);
    out
}

/// The body of a `Call` up to its arguments: flags and name.
pub(crate) fn call_prefix(flags: u8, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + name.len());
    out.put_u8(flags);
    put_name(&mut out, name);
    out
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    // Task names are module paths; none comes near 64 KiB.
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    out.put_u16_le(len);
    out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
}

/// The body of a `Batch`.
pub(crate) fn batch_body<'a>(
    name: &str,
    items: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    put_name(&mut out, name);
    out.put_u32_le(u32::try_from(items.len()).unwrap_or(u32::MAX));
    for item in items {
        out.put_u32_le(u32::try_from(item.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(item);
    }
    out
}

/// A parsed `Call` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Call<'a> {
    pub(crate) flags: u8,
    pub(crate) name: &'a str,
    pub(crate) args: &'a [u8],
}

pub(crate) fn parse_call(mut body: &[u8]) -> Result<Call<'_>, CodecError> {
    if body.is_empty() {
        return error("a call without flags");
    }
    let flags = body.get_u8();
    let name = take_name(&mut body)?;
    Ok(Call {
        flags,
        name,
        args: body,
    })
}

/// A parsed `Batch` body: the task's name and each item's arguments.
pub(crate) fn parse_batch(mut body: &[u8]) -> Result<(&str, Vec<&[u8]>), CodecError> {
    let name = take_name(&mut body)?;
    let count = take_u32(&mut body, "a batch's count")?;
    // Each item takes at least its 4-byte length: a count beyond that is a lie.
    if count as usize > body.len() / 4 {
        return error(format!(
            "a batch claims {count} items in {} bytes",
            body.len()
        ));
    }
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        items.push(take_slice(&mut body, "a batch item")?);
    }
    if !body.is_empty() {
        return error(format!("{} bytes after a batch's last item", body.len()));
    }
    Ok((name, items))
}

/// A task's outcome as a worker reports it: the encoded result, or why there is none.
pub(crate) type Outcome = Result<Bytes, Failure>;

const OK: u8 = 0;
const PANICKED: u8 = 1;
const UNKNOWN: u8 = 2;
const CODEC: u8 = 3;

/// Appends an outcome whose result was already written by `write` (or a failure).
pub(crate) fn put_outcome(out: &mut Vec<u8>, outcome: &Result<&[u8], Failure>, with_len: bool) {
    let (tag, bytes) = match outcome {
        Ok(result) => (OK, *result),
        Err(Failure::Panicked(message)) => (PANICKED, message.as_bytes()),
        Err(Failure::UnknownTask(name)) => (UNKNOWN, name.as_bytes()),
        Err(Failure::Codec(reason)) => (CODEC, reason.as_bytes()),
    };
    out.put_u8(tag);
    if with_len {
        out.put_u32_le(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    }
    out.extend_from_slice(bytes);
}

fn outcome(tag: u8, bytes: Bytes) -> Result<Outcome, CodecError> {
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    Ok(match tag {
        OK => Ok(bytes.clone()),
        PANICKED => Err(Failure::Panicked(text())),
        UNKNOWN => Err(Failure::UnknownTask(text())),
        CODEC => Err(Failure::Codec(text())),
        _ => return error(format!("unknown outcome tag {tag}")),
    })
}

pub(crate) fn parse_done(mut body: Bytes) -> Result<Outcome, CodecError> {
    if body.is_empty() {
        return error("an outcome without a tag");
    }
    let tag = body.get_u8();
    outcome(tag, body)
}

pub(crate) fn parse_batch_done(mut body: Bytes) -> Result<Vec<Outcome>, CodecError> {
    let count = take_u32(&mut &body[..], "a batch result's count")?;
    body.advance(4);
    if count as usize > body.len() / 5 {
        return error(format!(
            "a batch result claims {count} items in {} bytes",
            body.len()
        ));
    }
    let mut outcomes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if body.len() < 5 {
            return error("a batch result item cut short");
        }
        let tag = body.get_u8();
        let len = body.get_u32_le() as usize;
        if len > body.len() {
            return error(format!(
                "a batch result item of {len} bytes in {}",
                body.len()
            ));
        }
        outcomes.push(outcome(tag, body.split_to(len))?);
    }
    if !body.is_empty() {
        return error(format!(
            "{} bytes after a batch result's last item",
            body.len()
        ));
    }
    Ok(outcomes)
}

fn take_u32(body: &mut &[u8], what: &str) -> Result<u32, CodecError> {
    if body.len() < 4 {
        return error(format!("{what} cut short"));
    }
    Ok(body.get_u32_le())
}

fn take_slice<'a>(body: &mut &'a [u8], what: &str) -> Result<&'a [u8], CodecError> {
    let len = take_u32(body, what)? as usize;
    if len > body.len() {
        return error(format!("{what} of {len} bytes in {}", body.len()));
    }
    let (slice, rest) = body.split_at(len);
    *body = rest;
    Ok(slice)
}

fn take_name<'a>(body: &mut &'a [u8]) -> Result<&'a str, CodecError> {
    if body.len() < 2 {
        return error("a task name cut short");
    }
    let len = usize::from(body.get_u16_le());
    if len > body.len() {
        return error(format!("a task name of {len} bytes in {}", body.len()));
    }
    let (name, rest) = body.split_at(len);
    *body = rest;
    std::str::from_utf8(name).or_else(|_| error("a task name that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn kinds() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Init),
            Just(Kind::Hello),
            Just(Kind::Call),
            Just(Kind::Batch),
            Just(Kind::Started),
            Just(Kind::Done),
            Just(Kind::BatchDone),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = decode(&mut buf, 256) {
                let _ = parse_call(&frame.body);
                let _ = parse_batch(&frame.body);
                let _ = parse_done(frame.body.clone());
                let _ = parse_batch_done(frame.body.clone());
            }
            let _ = parse_call(&bytes);
            let _ = parse_batch(&bytes);
            let _ = parse_done(Bytes::from(bytes.clone()));
            let _ = parse_batch_done(Bytes::from(bytes));
        }

        #[test]
        fn frames_survive_any_split(
            frames in prop::collection::vec(
                (kinds(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..300)), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let stream: Vec<u8> = frames
                .iter()
                .flat_map(|(kind, id, body)| frame(*kind, *id, body))
                .collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            let mut from = 0;
            for cut in cuts {
                buf.extend_from_slice(&stream[from..cut]);
                from = cut;
                while let Some(frame) = decode(&mut buf, 300).unwrap() {
                    decoded.push((frame.kind, frame.id, frame.body.to_vec()));
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn batches_and_outcomes_round_trip(
            name in "[a-z:_]{0,40}",
            items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20),
            failures in prop::collection::vec(any::<bool>(), 0..20),
        ) {
            let body = batch_body(&name, items.iter().map(Vec::as_slice));
            let (parsed_name, parsed) = parse_batch(&body).unwrap();
            prop_assert_eq!(parsed_name, &name);
            prop_assert_eq!(parsed, items.iter().map(Vec::as_slice).collect::<Vec<_>>());

            let mut out = Vec::new();
            out.put_u32_le(failures.len() as u32);
            let expected: Vec<Outcome> = failures
                .iter()
                .enumerate()
                .map(|(i, failed)| if *failed {
                    Err(Failure::Panicked(format!("item {i}")))
                } else {
                    Ok(Bytes::from(vec![i as u8; i]))
                })
                .collect();
            for outcome in &expected {
                put_outcome(&mut out, &outcome.as_ref().map(|b| &b[..]).map_err(Clone::clone), true);
            }
            prop_assert_eq!(parse_batch_done(Bytes::from(out)).unwrap(), expected);
        }
    }

    #[test]
    fn oversized_and_undersized_frames_are_refused_with_their_sizes() {
        let mut buf = BytesMut::from(&frame(Kind::Done, 1, &[0; 100])[..]);
        let err = decode(&mut buf, 50).unwrap_err();
        assert!(err.0.contains("over the limit of 50"), "{}", err.0);
        let mut buf = BytesMut::from(&[3, 0, 0, 0, 1, 2, 3][..]);
        assert!(
            decode(&mut buf, 50)
                .unwrap_err()
                .0
                .contains("shorter than its header")
        );
        let mut buf = BytesMut::from(&frame(Kind::Done, 1, &[])[..]);
        buf[4] = 99;
        assert!(
            decode(&mut buf, 50)
                .unwrap_err()
                .0
                .contains("unknown frame kind 99")
        );
    }

    #[test]
    fn calls_round_trip() {
        let mut body = call_prefix(REPORT_START, "app::square");
        body.extend_from_slice(&[7, 8]);
        assert_eq!(
            parse_call(&body).unwrap(),
            Call {
                flags: REPORT_START,
                name: "app::square",
                args: &[7, 8]
            }
        );
    }
}
