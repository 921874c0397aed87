//! The process-wide registry of named tasks.
//!
//! Every function annotated with `#[task]` (from `brisk-macros`) registers itself here under its
//! stable name (its module path), at link time, without any call at start-up. Backends that
//! run work in another process (the cluster backend) find tasks by name instead of shipping
//! closures.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::{BoxError, SaveSpec, Value};

/// A task registered by `#[task]`.
#[derive(Debug)]
#[non_exhaustive]
pub struct TaskEntry {
    /// The stable task name: the function's path (`my_crate::module::function`).
    pub name: &'static str,
    /// The key prefix of the task's keys (the function's bare name).
    pub key_prefix: &'static str,
    /// The explicit version given to `#[task(version = "…")]`, if any.
    pub version: Option<&'static str>,
    /// BLAKE3 (first 128 bits) of the function's normalized source tokens.
    pub source_hash: [u8; 16],
    /// Number of parameters.
    pub arity: usize,
    /// Whether the task is checkpointed (`#[task(save)]`).
    pub checkpointed: bool,
    invoker: fn() -> Option<Invoker>,
}

impl TaskEntry {
    /// A registry entry (used by the code `#[task]` generates).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        key_prefix: &'static str,
        version: Option<&'static str>,
        source_hash: [u8; 16],
        arity: usize,
        checkpointed: bool,
        invoker: fn() -> Option<Invoker>,
    ) -> Self {
        Self {
            name,
            key_prefix,
            version,
            source_hash,
            arity,
            checkpointed,
            invoker,
        }
    }

    /// How to run this task by name with decoded arguments, in a process that did not build
    /// the graph (a cluster worker): `Some` when every parameter type and the result type are
    /// `Serialize + DeserializeOwned` (so values can travel through a store), `None`
    /// otherwise.
    #[must_use]
    pub fn invoker(&self) -> Option<Invoker> {
        (self.invoker)()
    }
}

/// Runs a registered task from type-erased argument values (see [`TaskEntry::invoker`]).
#[derive(Clone)]
pub struct Invoker {
    params: Vec<SaveSpec>,
    output: SaveSpec,
    call: fn(Vec<Value>) -> Result<Value, BoxError>,
}

impl fmt::Debug for Invoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invoker")
            .field(
                "params",
                &self
                    .params
                    .iter()
                    .map(SaveSpec::type_name)
                    .collect::<Vec<_>>(),
            )
            .field("output", &self.output.type_name())
            .finish_non_exhaustive()
    }
}

impl Invoker {
    /// An invoker (used by the code `#[task]` generates).
    #[doc(hidden)]
    #[must_use]
    pub fn new(
        params: Vec<SaveSpec>,
        output: SaveSpec,
        call: fn(Vec<Value>) -> Result<Value, BoxError>,
    ) -> Self {
        Self {
            params,
            output,
            call,
        }
    }

    /// How to decode (and encode) each parameter, in order.
    #[must_use]
    pub fn params(&self) -> &[SaveSpec] {
        &self.params
    }

    /// How to encode (and decode) the result.
    #[must_use]
    pub fn output(&self) -> &SaveSpec {
        &self.output
    }

    /// Runs the task on `args` (one value per parameter, of the parameter's type). A wrong
    /// count or type is an error naming the parameter, never a panic; a panicking task body
    /// is an error too.
    ///
    /// # Errors
    /// Bad arguments, or the task's own error.
    pub fn call(&self, args: Vec<Value>) -> Result<Value, BoxError> {
        if args.len() != self.params.len() {
            return Err(format!(
                "the task takes {} argument(s), {} given",
                self.params.len(),
                args.len()
            )
            .into());
        }
        for (i, (a, p)) in args.iter().zip(&self.params).enumerate() {
            if (**a).type_id() != p.type_id() {
                return Err(format!(
                    "argument {i} is not a `{}` (the parameter's type)",
                    p.type_name()
                )
                .into());
            }
        }
        let call = self.call;
        crate::error::catch_panic("the task", || call(args))
    }
}

/// Autoref specialization used by `#[task]`: `(&Probe::<T>::new()).spec()` is
/// `Some(SaveSpec)` for serde types and `None` for the others, decided at compile time.
#[doc(hidden)]
pub mod __probe {
    use std::marker::PhantomData;

    use crate::SaveSpec;

    /// A type to probe.
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Default for Probe<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> Probe<T> {
        /// A probe.
        #[must_use]
        pub const fn new() -> Self {
            Self(PhantomData)
        }
    }

    /// Chosen when `T` is a serde type.
    pub trait Serde {
        /// The codec of `T`.
        fn spec(&self) -> Option<SaveSpec>;
    }

    impl<T> Serde for Probe<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        fn spec(&self) -> Option<SaveSpec> {
            Some(SaveSpec::of::<T>())
        }
    }

    /// Chosen otherwise.
    pub trait NoSerde {
        /// No codec.
        fn spec(&self) -> Option<SaveSpec>;
    }

    impl<T> NoSerde for &Probe<T> {
        fn spec(&self) -> Option<SaveSpec> {
            None
        }
    }
}

inventory::collect!(TaskEntry);

fn index() -> &'static HashMap<&'static str, &'static TaskEntry> {
    static INDEX: OnceLock<HashMap<&'static str, &'static TaskEntry>> = OnceLock::new();
    INDEX.get_or_init(|| {
        inventory::iter::<TaskEntry>
            .into_iter()
            .map(|e| (e.name, e))
            .collect()
    })
}

/// The task registered under `name`, if any.
#[must_use]
pub fn lookup(name: &str) -> Option<&'static TaskEntry> {
    index().get(name).copied()
}

/// Every registered task, in no particular order.
pub fn tasks() -> impl Iterator<Item = &'static TaskEntry> {
    index().values().copied()
}
