//! A task's arguments and result as they travel to and from a worker: [`EncodedArgs`] when
//! the task is called by name, [`encode_args`] and [`decode_output`] when it is called by
//! its type.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Task;
use crate::{Error, Result};

/// A task's arguments, encoded with `postcard`, and the name of the type they were encoded
/// from: what [`Runtime::spawn_process_by_name`](crate::Runtime::spawn_process_by_name)
/// takes.
///
/// `postcard` carries no types, so the bytes of one type often decode as another (the bytes
/// of the `String` `"hello"` decode as the `u64` 5). The type's name travels with them, and
/// a call whose arguments were encoded from another type than the task takes is refused
/// before anything is decoded. Names come from [`std::any::type_name`]: a check that
/// catches a wrong type, not a proof of the right one (the same build always names a type
/// the same way; different builds may not).
///
/// # Examples
///
/// ```
/// use plait::process::EncodedArgs;
///
/// let args = EncodedArgs::encode(&(2_i64, 3_i64))?;
/// assert_eq!(args.type_name(), "(i64, i64)");
/// // A reference stands for what it refers to.
/// assert_eq!(EncodedArgs::encode(&&(2_i64, 3_i64))?, args);
/// assert_eq!(args.bytes(), [4, 6]); // postcard's zigzag varints
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedArgs {
    type_name: String,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl EncodedArgs {
    /// Encodes `args`, noting their type: the task's argument type itself (a reference to
    /// it is taken for it), not a borrowed form that encodes alike (`&str` for a task that
    /// takes a `String` is refused: its type's name differs).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `args` cannot be encoded (a `Serialize` impl that fails).
    pub fn encode<A: Serialize + ?Sized>(args: &A) -> Result<EncodedArgs> {
        let mut type_name = std::any::type_name::<A>();
        while let Some(referent) = type_name
            .strip_prefix("&mut ")
            .or_else(|| type_name.strip_prefix('&'))
        {
            type_name = referent;
        }
        let bytes = postcard::to_allocvec(args).map_err(|error| Error::Codec {
            task: format!("arguments of type `{type_name}`"),
            reason: error.to_string(),
        })?;
        Ok(EncodedArgs {
            type_name: type_name.to_owned(),
            bytes,
        })
    }

    /// Arguments encoded elsewhere (received over a wire, say): `bytes` as `postcard`
    /// encoded a value of the type named `type_name`.
    pub fn from_parts(type_name: impl Into<String>, bytes: Vec<u8>) -> EncodedArgs {
        EncodedArgs {
            type_name: type_name.into(),
            bytes,
        }
    }

    /// The name of the type the arguments were encoded from.
    #[must_use]
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The encoded arguments.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded arguments, without their type's name.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Encodes a task's arguments, refusing them if they are over the payload limit.
pub(crate) fn encode_args<T: Task>(args: &T::Args, limit: usize) -> Result<Bytes> {
    let bytes = postcard::to_allocvec(args).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!("the arguments could not be encoded: {error}"),
    })?;
    if bytes.len() > limit {
        return Err(Error::PayloadTooLarge {
            task: T::NAME.to_owned(),
            bytes: bytes.len(),
            limit,
        });
    }
    Ok(Bytes::from(bytes))
}

/// Decodes a task's result, all of it (bytes left over mean a result of another type).
pub(crate) fn decode_output<T: Task>(bytes: &[u8]) -> Result<T::Output> {
    let expected = std::any::type_name::<T::Output>();
    let codec = |reason| Error::Codec {
        task: T::NAME.to_owned(),
        reason,
    };
    let (output, rest) = postcard::take_from_bytes(bytes).map_err(|error| {
        codec(format!(
            "the result could not be decoded as `{expected}`: {error}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(codec(format!(
            "the result is {} bytes, of which {} were left after decoding a `{expected}`",
            bytes.len(),
            rest.len()
        )));
    }
    Ok(output)
}
