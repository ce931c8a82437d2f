//! The frames between the runtime and its worker processes.
//!
//! A frame is a little-endian `u32` length (of what follows it), a kind byte, a `u64`
//! request id and a body. Arguments and results inside bodies are `postcard` (serde's
//! compact binary form), which delimits itself: a batch's items follow one another with no
//! length between them, and are decoded where their type is known. The frame layout around
//! them is written by hand so that results are decoded straight from the read buffer.
//!
//! | kind | from | body |
//! |---|---|---|
//! | `Init` | runtime | `postcard` of [`Init`] |
//! | `Hello` | worker | process id `u32`, the descriptor of its slot `i32` (see `slot.rs`) |
//! | `Call` | runtime | flags `u8`, name length `u16`, name, arguments |
//! | `Batch` | runtime | name length `u16`, name, count `u32`, then the items' arguments back to back |
//! | `Started` | worker | empty: the call with this id has started (sent only when asked) |
//! | `Done` | worker | an outcome: tag `u8`, then the result or the failure's message |
//! | `BatchDone` | worker | count `u32`, then per item a tag `u8` and the result (or a failure's length `u32` and message) |
//!
//! Decoding never panics and never trusts a length: every malformed input is a
//! [`CodecError`] (a property test feeds it arbitrary bytes).

use bytes::{Buf, BufMut};
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

/// One decoded frame, borrowed from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) kind: Kind,
    pub(crate) id: u64,
    pub(crate) body: &'a [u8],
}

/// What a worker needs before it serves: sent first, answered by `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Init {
    /// The largest frame either side may send.
    pub(crate) frame_limit: u64,
    /// The largest result one call may carry.
    pub(crate) payload_limit: u64,
    /// Address-space limit for the worker, in bytes.
    pub(crate) memory_limit: Option<u64>,
    /// A registered task to run once before serving, and its encoded arguments.
    pub(crate) initializer: Option<(String, Vec<u8>)>,
}

/// Serializes `value` with `postcard` onto the end of `out`, in place (postcard's own
/// writers either take the vector by value or write through `io::Write` a byte at a time).
pub(crate) fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    let start = out.len();
    let encoded = postcard::serialize_with_flavor(value, Append(&mut *out));
    if encoded.is_err() {
        // A value that fails half way leaves nothing behind.
        out.truncate(start);
    }
    encoded
}

/// `postcard`'s output flavor for appending to a vector we keep.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Varints arrive as slices of a few bytes: a `memcpy` call for each costs more than
        // the bytes themselves.
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &byte in data {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The whole frame at the front of `buf`, if it holds one, and its length (to advance past
/// once it is handled).
///
/// # Errors
///
/// A frame longer than `limit`, shorter than a header, or of an unknown kind.
/// The whole length of the frame at the start of `buf`, once its length field is in
/// (whether or not the rest is); `None` before.
pub(crate) fn frame_len(buf: &[u8]) -> Option<usize> {
    let len = buf.get(..4)?;
    Some(4 + u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
}

pub(crate) fn decode(buf: &[u8], limit: usize) -> Result<Option<(Frame<'_>, usize)>, CodecError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len < HEADER - 4 {
        return error(format!("a frame of {len} bytes is shorter than its header"));
    }
    if len > limit.saturating_add(HEADER) {
        return error(format!(
            "a frame of {len} bytes is over the limit of {limit} bytes"
        ));
    }
    let Some(mut frame) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let kind_byte = frame.get_u8();
    let Some(kind) = Kind::from_u8(kind_byte) else {
        return error(format!("unknown frame kind {kind_byte}"));
    };
    let id = frame.get_u64_le();
    Ok(Some((
        Frame {
            kind,
            id,
            body: frame,
        },
        4 + len,
    )))
}

/// How many more bytes `buf` needs to hold its first frame whole (0 if it does).
pub(crate) fn missing(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(len) => (4 + u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .saturating_sub(buf.len()),
        None => 4 - buf.len(),
    }
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

/// Appends the body of a `Call` up to its arguments: flags and name.
pub(crate) fn put_call_prefix(out: &mut Vec<u8>, flags: u8, name: &str) {
    out.put_u8(flags);
    put_name(out, name);
}

/// The length of a `Call` prefix for `name`.
pub(crate) fn call_prefix_len(name: &str) -> usize {
    3 + name.len().min(usize::from(u16::MAX))
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    // Task names are module paths; none comes near 64 KiB.
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    out.put_u16_le(len);
    out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
}

/// Appends the body of a `Batch` up to its items: name and count.
pub(crate) fn put_batch_prefix(out: &mut Vec<u8>, name: &str, count: u32) {
    put_name(out, name);
    out.put_u32_le(count);
}

/// The length of a `Batch` prefix for `name`.
pub(crate) fn batch_prefix_len(name: &str) -> usize {
    6 + name.len().min(usize::from(u16::MAX))
}

/// A parsed `Call` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CallBody<'a> {
    pub(crate) flags: u8,
    pub(crate) name: &'a str,
    pub(crate) args: &'a [u8],
}

pub(crate) fn parse_call(mut body: &[u8]) -> Result<CallBody<'_>, CodecError> {
    if body.is_empty() {
        return error("a call without flags");
    }
    let flags = body.get_u8();
    let name = take_name(&mut body)?;
    Ok(CallBody {
        flags,
        name,
        args: body,
    })
}

/// A parsed `Batch` body: the task's name, the item count, and the items back to back.
pub(crate) fn parse_batch(mut body: &[u8]) -> Result<(&str, u32, &[u8]), CodecError> {
    let name = take_name(&mut body)?;
    let count = take_u32(&mut body, "a batch's count")?;
    Ok((name, count, body))
}

/// A task's outcome as a worker reports it: the encoded result, or why there is none.
pub(crate) type Outcome<'a> = Result<&'a [u8], Failure>;

pub(crate) const OK: u8 = 0;
const PANICKED: u8 = 1;
const UNKNOWN: u8 = 2;
const CODEC: u8 = 3;

/// Appends a `Done` body's outcome: the tag, then the result or the message.
pub(crate) fn put_outcome(out: &mut Vec<u8>, outcome: &Outcome<'_>) {
    match outcome {
        Ok(result) => {
            out.put_u8(OK);
            out.extend_from_slice(result);
        }
        Err(failure) => {
            let (tag, message) = failure_parts(failure);
            out.put_u8(tag);
            out.extend_from_slice(message.as_bytes());
        }
    }
}

/// Appends a batch item's failure: tag, length, message. (A success is the `OK` tag and
/// the result, which delimits itself.)
pub(crate) fn put_item_failure(out: &mut Vec<u8>, failure: &Failure) {
    let (tag, message) = failure_parts(failure);
    out.put_u8(tag);
    out.put_u32_le(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&message.as_bytes()[..message.len().min(u32::MAX as usize)]);
}

fn failure_parts(failure: &Failure) -> (u8, &str) {
    match failure {
        Failure::Panicked(message) => (PANICKED, message),
        Failure::UnknownTask(name) => (UNKNOWN, name),
        Failure::Codec(reason) => (CODEC, reason),
    }
}

fn failure(tag: u8, message: &[u8]) -> Result<Failure, CodecError> {
    let text = String::from_utf8_lossy(message).into_owned();
    Ok(match tag {
        PANICKED => Failure::Panicked(text),
        UNKNOWN => Failure::UnknownTask(text),
        CODEC => Failure::Codec(text),
        _ => return error(format!("unknown outcome tag {tag}")),
    })
}

/// A `Done` body's outcome.
pub(crate) fn parse_done(body: &[u8]) -> Result<Outcome<'_>, CodecError> {
    match body.split_first() {
        None => error("an outcome without a tag"),
        Some((&OK, result)) => Ok(Ok(result)),
        Some((&tag, message)) => failure(tag, message).map(Err),
    }
}

/// Reads a batch item's outcome from `stream`: `Ok(Ok(()))` if it is a result, which the
/// caller then decodes (and so advances past); the failure otherwise, already advanced past.
pub(crate) fn take_item(stream: &mut &[u8]) -> Result<Result<(), Failure>, CodecError> {
    if stream.is_empty() {
        return error("a batch result cut short");
    }
    let tag = stream.get_u8();
    if tag == OK {
        return Ok(Ok(()));
    }
    let message = take_slice(stream, "a batch item's failure")?;
    failure(tag, message).map(Err)
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

    /// Every frame at the front of `buf`, as the readers take them.
    fn drain(buf: &mut Vec<u8>, limit: usize) -> Result<Vec<(Kind, u64, Vec<u8>)>, CodecError> {
        let mut frames = Vec::new();
        while let Some((frame, len)) = decode(buf, limit)? {
            frames.push((frame.kind, frame.id, frame.body.to_vec()));
            buf.drain(..len);
        }
        Ok(frames)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = bytes.clone();
            if let Ok(frames) = drain(&mut buf, 256) {
                for (_, _, body) in frames {
                    let _ = parse_call(&body);
                    let _ = parse_batch(&body);
                    let _ = parse_done(&body);
                    let mut stream = &body[..];
                    while let Ok(Err(_)) = take_item(&mut stream) {}
                }
            }
            let _ = missing(&bytes);
            let _ = parse_call(&bytes);
            let _ = parse_batch(&bytes);
            let _ = parse_done(&bytes);
            let mut stream = &bytes[..];
            while let Ok(Err(_)) = take_item(&mut stream) {}
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
            let mut buf = Vec::new();
            let mut decoded = Vec::new();
            let mut from = 0;
            for cut in cuts {
                buf.extend_from_slice(&stream[from..cut]);
                from = cut;
                prop_assert!(missing(&buf) > 0 || decode(&buf, 300).unwrap().is_some());
                decoded.extend(drain(&mut buf, 300).unwrap());
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn batches_and_outcomes_round_trip(
            name in "[a-z:_]{0,40}",
            items in prop::collection::vec(any::<u64>(), 0..20),
            failures in prop::collection::vec(any::<bool>(), 0..20),
        ) {
            let mut body = Vec::new();
            put_batch_prefix(&mut body, &name, items.len() as u32);
            prop_assert_eq!(body.len(), batch_prefix_len(&name));
            for item in &items {
                postcard::to_io(item, &mut body).unwrap();
            }
            let (parsed_name, count, mut stream) = parse_batch(&body).unwrap();
            prop_assert_eq!(parsed_name, &name);
            prop_assert_eq!(count as usize, items.len());
            for item in &items {
                let (value, rest) = postcard::take_from_bytes::<u64>(stream).unwrap();
                prop_assert_eq!(value, *item);
                stream = rest;
            }
            prop_assert!(stream.is_empty());

            let mut out = Vec::new();
            for (i, failed) in failures.iter().enumerate() {
                if *failed {
                    put_item_failure(&mut out, &Failure::Panicked(format!("item {i}")));
                } else {
                    out.push(OK);
                    postcard::to_io(&(i as u64), &mut out).unwrap();
                }
            }
            let mut stream = &out[..];
            for (i, failed) in failures.iter().enumerate() {
                match take_item(&mut stream).unwrap() {
                    Ok(()) => {
                        prop_assert!(!failed);
                        let (value, rest) = postcard::take_from_bytes::<u64>(stream).unwrap();
                        prop_assert_eq!(value, i as u64);
                        stream = rest;
                    }
                    Err(failure) => {
                        prop_assert!(*failed);
                        prop_assert_eq!(failure, Failure::Panicked(format!("item {i}")));
                    }
                }
            }
            prop_assert!(stream.is_empty());
        }
    }

    #[test]
    fn oversized_and_undersized_frames_are_refused_with_their_sizes() {
        let buf = frame(Kind::Done, 1, &[0; 100]);
        let err = decode(&buf, 50).unwrap_err();
        assert!(err.0.contains("over the limit of 50"), "{}", err.0);
        let buf = [3, 0, 0, 0, 1, 2, 3];
        assert!(
            decode(&buf, 50)
                .unwrap_err()
                .0
                .contains("shorter than its header")
        );
        let mut buf = frame(Kind::Done, 1, &[]);
        buf[4] = 99;
        assert!(
            decode(&buf, 50)
                .unwrap_err()
                .0
                .contains("unknown frame kind 99")
        );
    }

    #[test]
    fn calls_and_outcomes_round_trip() {
        let mut body = Vec::new();
        put_call_prefix(&mut body, REPORT_START, "app::square");
        assert_eq!(body.len(), call_prefix_len("app::square"));
        body.extend_from_slice(&[7, 8]);
        assert_eq!(
            parse_call(&body).unwrap(),
            CallBody {
                flags: REPORT_START,
                name: "app::square",
                args: &[7, 8]
            }
        );
        let mut out = Vec::new();
        put_outcome(&mut out, &Ok(&[1, 2][..]));
        assert_eq!(parse_done(&out).unwrap(), Ok(&[1, 2][..]));
        out.clear();
        put_outcome(&mut out, &Err(Failure::Codec("bad".into())));
        assert_eq!(parse_done(&out).unwrap(), Err(Failure::Codec("bad".into())));
    }
}
