//! [`Payload`]: what plait's workers run, in the form it is stored and sent.
//!
//! The store treats a payload as opaque bytes; this is the format plait's clients write
//! and its workers read. It is JSON, with a `format` tag that a worker checks before it
//! reads anything else:
//!
//! ```json
//! {"format":"plait.task.v1","kind":"command","argv":["convert","in.png","out.jpg"],"env":{},"cwd":null}
//! {"format":"plait.task.v1","kind":"task","name":"thumbs::resize","version":2,"args":{"width":128}}
//! {"format":"plait.task.v1","kind":"encoded","name":"thumbs::resize","version":2,"args":{"type_name":"u32","bytes":[128,1]}}
//! ```
//!
//! The third form is a graph's process node sent to a worker: its arguments in the process
//! strand's own encoding, and its result, in that encoding too, decoded by the graph that
//! sent it (both ends are builds of one program).
//!
//! Why JSON and a tag: a payload outlives the build that wrote it (it may wait for days),
//! and may be written by another program (a shell script, a Python caller). JSON is read by
//! all of them and says what is in it, so a worker can name what it cannot read; the tag
//! lets a worker refuse a newer format cleanly, as a dead letter with the reason, rather
//! than misread it. Its cost (a few hundred bytes and a microsecond or two per task) is
//! small beside a task's round trip through storage. The process strand's pipe, where both
//! ends are one build, keeps its compact binary codec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::failure::{Failure, FailureKind};

/// The format this build writes and reads.
pub const PAYLOAD_FORMAT: &str = "plait.task.v1";

/// A task as plait's workers run it: a command, or a task registered by name.
///
/// # Examples
///
/// ```
/// use plait_queue::Payload;
///
/// let payload = Payload::command(["echo", "hello"]);
/// let bytes = payload.encode();
/// assert_eq!(Payload::decode(&bytes)?, payload);
///
/// let refused = Payload::decode(br#"{"format":"plait.task.v9","kind":"command"}"#).unwrap_err();
/// assert!(refused.message.contains("plait.task.v9"));
/// # Ok::<(), plait_queue::Failure>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Payload {
    /// A program and its arguments, run in a process group of its own.
    Command {
        /// The program, then its arguments.
        argv: Vec<String>,
        /// Variables set for it, beside the worker's environment.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Where it runs (the worker's directory if absent).
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A function registered with `#[plait::task]` in the worker's binary.
    Task {
        /// The name it is registered under.
        name: String,
        /// The version asked for; a worker with another version refuses the task.
        version: u32,
        /// Its arguments, as JSON.
        args: serde_json::Value,
    },
    /// A registered task with its arguments encoded as the process strand encodes them: a
    /// task graph's process node, from a program built with the worker's tasks. Its result
    /// is stored in that encoding.
    Encoded {
        /// The name it is registered under.
        name: String,
        /// The version asked for; a worker with another version refuses the task.
        version: u32,
        /// Its arguments.
        args: plait::process::EncodedArgs,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    format: &'static str,
    #[serde(flatten)]
    payload: &'a Payload,
}

impl Payload {
    /// A command: `argv[0]` run with the rest as its arguments.
    pub fn command<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Payload::Command {
            argv: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    /// A registered task called by name, with its arguments.
    ///
    /// # Errors
    ///
    /// When `args` cannot be written as JSON (a map with non-string keys, say).
    pub fn task(
        name: impl Into<String>,
        version: u32,
        args: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Payload::Task {
            name: name.into(),
            version,
            args: serde_json::to_value(args)?,
        })
    }

    /// The payload as stored: JSON, tagged with [`PAYLOAD_FORMAT`].
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            format: PAYLOAD_FORMAT,
            payload: self,
        })
        // A `Payload` holds strings, paths and JSON values only: it always serialises.
        .unwrap_or_default()
    }

    /// Reads a stored payload, checking its format tag first.
    ///
    /// # Errors
    ///
    /// A [`Failure`] of kind [`BadPayload`](FailureKind::BadPayload) that names what was
    /// wrong: not JSON, no format tag, a format this build does not read (a newer one, or
    /// another program's), an unknown kind, a missing field, a command with no program.
    pub fn decode(bytes: &[u8]) -> Result<Self, Failure> {
        let bad = |message: String| Failure::new(FailureKind::BadPayload, message);
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
            bad(format!(
                "the payload is not JSON ({error}); plait's workers read {PAYLOAD_FORMAT} payloads"
            ))
        })?;
        let format = value.get("format").and_then(serde_json::Value::as_str);
        match format {
            Some(PAYLOAD_FORMAT) => {}
            Some(other) if other.starts_with("plait.task.") => {
                return Err(bad(format!(
                    "the payload's format is {other}, which this worker does not read (it \
                     reads {PAYLOAD_FORMAT}); run a worker of the plait that enqueued it"
                )));
            }
            Some(other) => {
                return Err(bad(format!(
                    "the payload's format is {other:?}, not a plait task ({PAYLOAD_FORMAT})"
                )));
            }
            None => {
                return Err(bad(format!(
                    "the payload has no \"format\" tag; plait's workers read {PAYLOAD_FORMAT} payloads"
                )));
            }
        }
        let payload: Payload = serde_json::from_value(value).map_err(|error| {
            bad(format!(
                "the {PAYLOAD_FORMAT} payload is malformed: {error}"
            ))
        })?;
        if let Payload::Command { argv, .. } = &payload
            && argv.first().is_none_or(String::is_empty)
        {
            return Err(bad("the command has no program (argv is empty)".to_owned()));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_task_payload_round_trips_with_its_arguments() {
        let payload =
            Payload::task("thumbs::resize", 2, &serde_json::json!({"width": 128})).unwrap();
        let bytes = payload.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"format":"plait.task.v1","kind":"task""#),
            "{text}"
        );
        assert_eq!(Payload::decode(&bytes).unwrap(), payload);
    }

    #[test]
    fn each_unreadable_payload_is_named_for_what_is_wrong() {
        let cases: [(&[u8], &str); 6] = [
            (b"\x00\x01", "not JSON"),
            (br#"{"kind":"command","argv":["x"]}"#, "no \"format\" tag"),
            (
                br#"{"format":"celery","kind":"command"}"#,
                "not a plait task",
            ),
            (
                br#"{"format":"plait.task.v2","kind":"command"}"#,
                "does not read",
            ),
            (
                br#"{"format":"plait.task.v1","kind":"rocket"}"#,
                "malformed",
            ),
            (
                br#"{"format":"plait.task.v1","kind":"command","argv":[]}"#,
                "no program",
            ),
        ];
        for (bytes, said) in cases {
            let failure = Payload::decode(bytes).unwrap_err();
            assert_eq!(failure.kind, FailureKind::BadPayload);
            assert!(failure.message.contains(said), "{failure}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Payload::decode(&bytes);
        }

        #[test]
        fn commands_round_trip(argv in proptest::collection::vec("[ -~]{1,12}", 1..6),
                               env in proptest::collection::btree_map("[A-Z_]{1,8}", "[ -~]{0,12}", 0..4)) {
            let payload = Payload::Command { argv, env, cwd: Some(PathBuf::from("/tmp")) };
            prop_assert_eq!(Payload::decode(&payload.encode()).unwrap(), payload);
        }
    }
}
