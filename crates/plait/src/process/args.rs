//! [`EncodedArgs`]: a task's arguments as they travel when the task is called by name.

use serde::{Deserialize, Serialize};

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
