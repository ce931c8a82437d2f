//! Tasks by name: what `#[plait::task]` registers, and how a worker finds a task.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EncodedArgs;
use super::codec;
use super::slot::Slot;
use crate::Error;
use crate::error::take_panic;

/// A function that worker processes can run by name; implemented by `#[plait::task]`.
///
/// Write the attribute rather than implementing this by hand: the attribute also registers
/// the task, and a task that is not registered cannot run in a worker.
pub trait Task: Copy + Send + Sync + 'static {
    /// The arguments: the one argument's type, or a tuple of several.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The result.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The registered name: the function's module path and name, or the `name` given
    /// to `#[plait::task(name = "…")]`.
    const NAME: &'static str;
    /// The version given to `#[plait::task(version = N)]` (1 if none): work queued for
    /// another version of the task is refused rather than misread.
    const VERSION: u32 = 1;

    /// Runs the function (in a worker process, or here).
    fn run(args: Self::Args) -> Self::Output;
}

/// One registered task, collected at link time; made by `#[plait::task]`.
#[derive(Debug)]
pub struct Registration {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    /// The name of the arguments' type, checked against a call by name's.
    pub(crate) args_type: fn() -> &'static str,
    pub(crate) run: RunOne,
    pub(crate) run_batch: RunBatch,
    pub(crate) run_json: RunJson,
    pub(crate) args_from_json: ArgsFromJson,
    pub(crate) output_to_json: OutputToJson,
}

/// Runs a call: its encoded arguments in, its encoded result appended to the output.
pub(crate) type RunOne = fn(&[u8], &mut Vec<u8>) -> Result<(), Failure>;
/// Runs a batch: `count` items' arguments back to back in, their outcomes appended; each
/// item noted in the worker's slot, if it has one, before it starts.
pub(crate) type RunBatch = fn(&[u8], u32, &mut Vec<u8>, Option<&Slot>) -> Result<(), Failure>;
/// Runs a call here with JSON arguments; its result as JSON. For callers that know the
/// task only by name and its arguments only as text: a command line.
pub(crate) type RunJson = fn(&str) -> Result<String, Error>;
/// Reads JSON arguments as the task's, and encodes them for a worker.
pub(crate) type ArgsFromJson = fn(&str) -> Result<EncodedArgs, Error>;
/// Decodes a worker's encoded result, and writes it as JSON.
pub(crate) type OutputToJson = fn(&[u8]) -> Result<String, Error>;

impl Registration {
    /// The registration of `T`.
    #[must_use]
    pub const fn of<T: Task>() -> Self {
        Registration {
            name: T::NAME,
            version: T::VERSION,
            args_type: std::any::type_name::<T::Args>,
            run: run_erased::<T>,
            run_batch: run_batch_erased::<T>,
            run_json: run_json::<T>,
            args_from_json: args_from_json::<T>,
            output_to_json: output_to_json::<T>,
        }
    }
}

inventory::collect!(Registration);

/// Why a task produced no result, as a worker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked(String),
    UnknownTask(String),
    Codec(String),
}

impl Failure {
    pub(crate) fn into_error(self, task: &str) -> Error {
        match self {
            Failure::Panicked(message) => Error::Panicked { message },
            Failure::UnknownTask(name) => unknown_task(&name),
            Failure::Codec(reason) => Error::Codec {
                task: task.to_owned(),
                reason,
            },
        }
    }
}

/// Decodes JSON arguments as the task's, runs it here with panics caught, and encodes its
/// result as JSON.
fn run_json<T: Task>(args: &str) -> Result<String, Error> {
    let args: T::Args = serde_json::from_str(args).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!(
            "the arguments `{args}` are not JSON of the task's argument type, `{}`: {error}",
            std::any::type_name::<T::Args>()
        ),
    })?;
    let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::run(args)))
        .map_err(Error::from_panic)?;
    serde_json::to_string(&output).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!("the result does not encode as JSON: {error}"),
    })
}

/// Reads JSON arguments as `T`'s, encoded for a worker.
fn args_from_json<T: Task>(args: &str) -> Result<EncodedArgs, Error> {
    let args: T::Args = serde_json::from_str(args).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!(
            "the arguments `{args}` are not JSON of the task's argument type, `{}`: {error}",
            std::any::type_name::<T::Args>()
        ),
    })?;
    EncodedArgs::encode(&args)
}

/// A worker's encoded result of `T`, as JSON.
fn output_to_json<T: Task>(bytes: &[u8]) -> Result<String, Error> {
    let output = super::decode_output::<T>(bytes)?;
    serde_json::to_string(&output).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!("the result does not encode as JSON: {error}"),
    })
}

/// The version of the registered task `name` (see `#[plait::task(version = N)]`), or
/// `None` if no task has that name.
#[must_use]
pub fn task_version(name: &str) -> Option<u32> {
    lookup(name).map(|registration| registration.version)
}

/// Runs the registered task `name` here, on this thread, with arguments given as JSON (a
/// tuple of several as a JSON array), and returns its result as JSON: for callers that
/// know a task only by name, such as a command line.
///
/// # Errors
///
/// [`Error::UnknownTask`] (with close names) if no task has that name; [`Error::Codec`] if
/// the arguments are not JSON of the task's argument type; [`Error::Panicked`] if it
/// panicked.
pub fn run_by_name_json(name: &str, args: &str) -> Result<String, Error> {
    let registration = lookup(name).ok_or_else(|| unknown_task(name))?;
    (registration.run_json)(args)
}

/// Decodes the arguments, runs the task with panics caught, encodes the result onto `out`.
fn run_erased<T: Task>(args: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
    let start = out.len();
    // Decoding and encoding run user code too (serde impls): a panic anywhere is the task's.
    catch_unwind(AssertUnwindSafe(|| {
        let args = decode_args::<T>(args)?;
        let output = T::run(args);
        codec::encode_into(&output, out)
            .map_err(|error| Failure::Codec(format!("the result could not be encoded: {error}")))
    }))
    .unwrap_or_else(|payload| {
        out.truncate(start);
        Err(Failure::Panicked(take_panic(payload)))
    })
}

/// Runs `count` items whose arguments follow one another in `stream`, appending each one's
/// outcome (see `codec::take_item`). A panic fails its item only; arguments that do not
/// decode fail the batch (the items after them cannot be found).
fn run_batch_erased<T: Task>(
    stream: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    slot: Option<&Slot>,
) -> Result<(), Failure> {
    let mut rest = stream;
    let mut index = 0;
    // Where the current item's outcome starts, to drop half of one that panicked.
    let mut mark = out.len();
    // Set while an item's arguments are being decoded: a panic there (in a `Deserialize`
    // impl) leaves no way to find the next item, so it fails the batch.
    let mut decoding = false;
    while index < count {
        // One unwinding frame for a whole run of items rather than one per item: a panic
        // ends the run, and the next one starts after the item that panicked.
        let ran = catch_unwind(AssertUnwindSafe(|| -> Result<(), Failure> {
            while index < count {
                mark = out.len();
                if let Some(slot) = slot {
                    slot.item(index);
                }
                decoding = true;
                let (args, next) = postcard::take_from_bytes::<T::Args>(rest).map_err(|error| {
                    Failure::Codec(format!(
                        "the arguments of batch item {index} could not be decoded: {error}"
                    ))
                })?;
                decoding = false;
                rest = next;
                index += 1;
                let output = T::run(args);
                out.push(codec::OK);
                if let Err(error) = codec::encode_into(&output, out) {
                    out.truncate(mark);
                    let reason = format!("the result could not be encoded: {error}");
                    codec::put_item_failure(out, &Failure::Codec(reason));
                }
            }
            Ok(())
        }));
        match ran {
            Ok(result) => result?,
            Err(payload) if decoding => {
                let message = take_panic(payload);
                return Err(Failure::Panicked(format!(
                    "decoding the arguments of batch item {index} panicked: {message}"
                )));
            }
            Err(payload) => {
                out.truncate(mark);
                let message = take_panic(payload);
                codec::put_item_failure(out, &Failure::Panicked(message));
            }
        }
    }
    if !rest.is_empty() {
        return Err(Failure::Codec(format!(
            "{} bytes were left after the batch's {count} items: the arguments were not \
             encoded as `{}`",
            rest.len(),
            std::any::type_name::<T::Args>()
        )));
    }
    Ok(())
}

/// Decodes a call's arguments as the task's, all of them: bytes left over mean they were
/// encoded from another type (postcard, which carries no types, would decode many a wrong
/// value without complaint otherwise).
fn decode_args<T: Task>(bytes: &[u8]) -> Result<T::Args, Failure> {
    let expected = std::any::type_name::<T::Args>();
    let (args, rest) = postcard::take_from_bytes::<T::Args>(bytes).map_err(|error| {
        Failure::Codec(format!(
            "the arguments could not be decoded as `{expected}`: {error}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(Failure::Codec(format!(
            "the arguments are {} bytes, of which {} were left after decoding a `{expected}`: \
             they were encoded from another type",
            bytes.len(),
            rest.len()
        )));
    }
    Ok(args)
}

fn registry() -> &'static HashMap<&'static str, &'static Registration> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static Registration>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map = HashMap::new();
        for registration in inventory::iter::<Registration> {
            if map.insert(registration.name, registration).is_some() {
                tracing::warn!(
                    name = registration.name,
                    "two tasks are registered under one name; the worker runs one of them"
                );
            }
        }
        map
    })
}

/// The registered task called `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Registration> {
    registry().get(name).copied()
}

/// The names of every registered task, sorted.
#[must_use]
pub fn registered_tasks() -> Vec<&'static str> {
    let mut names: Vec<_> = registry().keys().copied().collect();
    names.sort_unstable();
    names
}

/// `Error::UnknownTask` for `name`, with the registered names closest to it.
pub(crate) fn unknown_task(name: &str) -> Error {
    let names = registered_tasks();
    Error::UnknownTask {
        name: name.to_owned(),
        close: close_names(name, names.iter().copied()),
    }
}

/// Up to three of `candidates` that look like `name`: a typo in the whole path, or a near
/// or equal function name (a task moved to another module).
pub(crate) fn close_names<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let last = |path: &'a str| path.rsplit("::").next().unwrap_or(path);
    let name_last = name.rsplit("::").next().unwrap_or(name);
    let mut scored: Vec<(f64, &str)> = candidates
        .filter_map(|candidate| {
            let whole = strsim::normalized_damerau_levenshtein(name, candidate);
            let tail = strsim::normalized_damerau_levenshtein(name_last, last(candidate));
            (whole >= 0.85 || tail >= 0.75).then_some((whole.max(tail), candidate))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(3)
        .map(|(_, name)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[crate::task]
    fn square(x: u64) -> u64 {
        x.wrapping_mul(x)
    }

    #[crate::task]
    fn split(text: String, at: char) -> Vec<String> {
        text.split(at).map(str::to_owned).collect()
    }

    #[test]
    fn arguments_with_bytes_left_over_are_refused_with_the_type_they_were_read_as() {
        // The `String` "hello" is the bytes [5, h, e, l, l, o]: a `u64` 5, and five more.
        let hello = postcard::to_allocvec(&"hello".to_owned()).unwrap();
        let mut out = Vec::new();
        let Err(Failure::Codec(reason)) = run_erased::<square>(&hello, &mut out) else {
            panic!("the bytes of a String ran as a u64");
        };
        assert!(
            reason.contains("5 were left after decoding a `u64`"),
            "{reason}"
        );
        assert!(out.is_empty());
        // And in a batch: the leftovers fail it, since no item boundary can be trusted.
        let Err(Failure::Codec(reason)) = run_batch_erased::<square>(&hello, 1, &mut out, None)
        else {
            panic!("a batch with bytes left over succeeded");
        };
        assert!(reason.contains("5 bytes were left"), "{reason}");
    }

    proptest! {
        /// Every decoder a worker or the runtime runs on bytes from the other side: random
        /// bytes give an error or a value, never a panic.
        #[test]
        fn random_bytes_never_panic_a_decoder(
            bytes in prop::collection::vec(any::<u8>(), 0..96),
            count in 0_u32..6,
        ) {
            // The erased runners catch panics: none may come from decoding.
            let panicked = |ran: Result<(), Failure>| matches!(ran, Err(Failure::Panicked(_)));
            let mut out = Vec::new();
            prop_assert!(!panicked(run_erased::<square>(&bytes, &mut out)));
            prop_assert!(!panicked(run_erased::<split>(&bytes, &mut out)));
            prop_assert!(!panicked(run_batch_erased::<square>(&bytes, count, &mut out, None)));
            prop_assert!(!panicked(run_batch_erased::<split>(&bytes, count, &mut out, None)));
            let _ = crate::process::decode_output::<square>(&bytes);
            let _ = crate::process::decode_output::<split>(&bytes);
            let _ = super::super::map::decode_chunk::<square>(&bytes, count as usize);
            let _ = super::super::map::decode_chunk::<split>(&bytes, count as usize);
            let _ = postcard::from_bytes::<codec::Init>(&bytes);
        }

        /// What a worker decodes is exactly what was encoded: no value of the task's type
        /// is refused, and any bytes appended to it are.
        #[test]
        fn encoded_arguments_decode_whole_and_only_whole(
            text in ".{0,40}",
            extra in prop::collection::vec(any::<u8>(), 1..8),
        ) {
            let mut bytes = postcard::to_allocvec(&(text.clone(), ',')).unwrap();
            let mut out = Vec::new();
            prop_assert!(run_erased::<split>(&bytes, &mut out).is_ok());
            let parts: Vec<String> = postcard::from_bytes(&out).unwrap();
            prop_assert_eq!(parts.join(","), text);
            bytes.extend_from_slice(&extra);
            out.clear();
            prop_assert!(matches!(run_erased::<split>(&bytes, &mut out), Err(Failure::Codec(_))));
        }
    }

    #[test]
    fn close_names_prefer_near_paths_and_same_function_names() {
        let names = ["app::jobs::resize", "app::jobs::rotate", "app::mail::send"];
        assert_eq!(
            close_names("app::jobs::resise", names.into_iter()),
            ["app::jobs::resize"]
        );
        assert_eq!(
            close_names("other::resize", names.into_iter()),
            ["app::jobs::resize"]
        );
        assert!(close_names("zzz", names.into_iter()).is_empty());
    }

    #[test]
    fn unknown_task_error_names_the_task() {
        let err = unknown_task("nowhere::nothing");
        assert!(err.to_string().contains("nowhere::nothing"), "{err}");
    }
}
