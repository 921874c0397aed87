//! Graphs that another process can rebuild: an [`Origin`] says how a compute's graph was built
//! (a registered [`GraphBuilder`] and its parameters), and [`WireType`]s say how the values
//! that cross between processes are encoded.
//!
//! A cluster worker runs the *same program* as the driver. Instead of shipping closures, it
//! rebuilds the compute's graph by calling the same builder with the same parameters, finds
//! each node it must run by its position in that graph, and runs the node's own closure.
//! Library code attaches the origin (brisk-array's `compute`, brisk-zarr's writes), so users
//! change nothing but the executor.
//!
//! ```
//! use brisk_graph::{remote, ComputeOptions, Delayed, TaskSpec};
//!
//! fn squares(params: &str) -> Result<Vec<brisk_graph::AnyDelayed>, brisk_graph::BoxError> {
//!     let n: u64 = params.parse()?;
//!     let spec = TaskSpec::new("square").pure();
//!     let parts: Delayed<Vec<u64>> = (0..n).map(|i| spec.call(|x: u64| x * x, (i,))).collect();
//!     Ok(vec![parts.erase()])
//! }
//! brisk_graph::graph_builder!("docs::squares", squares);
//!
//! let origin = remote::Origin::new("docs::squares", "4");
//! let rebuilt = origin.build().unwrap();
//! assert_eq!(rebuilt.len(), 1);
//! let _opts = ComputeOptions::new().origin(origin);
//! ```

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::delayed::AnyDelayed;
use crate::node::{BoxError, SaveSpec, Value};

/// How a compute's graph was built: a [`GraphBuilder`] registered under `builder`, called with
/// `params` (text, usually JSON). Rebuilding it must give a graph of the same shape: the same
/// tasks in the same places (keys of impure tasks may differ, nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    builder: String,
    params: String,
}

impl Origin {
    /// The origin "call `builder` with `params`".
    #[must_use]
    pub fn new(builder: impl Into<String>, params: impl Into<String>) -> Self {
        Self {
            builder: builder.into(),
            params: params.into(),
        }
    }

    /// The builder's registered name.
    #[must_use]
    pub fn builder(&self) -> &str {
        &self.builder
    }

    /// The builder's parameters.
    #[must_use]
    pub fn params(&self) -> &str {
        &self.params
    }

    /// Rebuilds the graph's outputs, in this process.
    ///
    /// # Errors
    /// No builder of that name is registered in this program, or the builder failed.
    pub fn build(&self) -> Result<Vec<AnyDelayed>, BoxError> {
        let entry = builders().get(self.builder.as_str()).ok_or_else(|| {
            format!(
                "no graph builder `{}` is registered in this program (is it the same binary as \
                 the driver?)",
                self.builder
            )
        })?;
        (entry.build)(&self.params)
    }
}

/// A function that builds a graph from its parameters, registered by name at link time with
/// [`graph_builder!`](crate::graph_builder).
pub struct GraphBuilder {
    name: &'static str,
    build: fn(&str) -> Result<Vec<AnyDelayed>, BoxError>,
}

impl GraphBuilder {
    /// A registry entry (use [`graph_builder!`](crate::graph_builder)).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        build: fn(&str) -> Result<Vec<AnyDelayed>, BoxError>,
    ) -> Self {
        Self { name, build }
    }
}

impl fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

inventory::collect!(GraphBuilder);

fn builders() -> &'static HashMap<&'static str, &'static GraphBuilder> {
    static INDEX: OnceLock<HashMap<&'static str, &'static GraphBuilder>> = OnceLock::new();
    INDEX.get_or_init(|| {
        inventory::iter::<GraphBuilder>
            .into_iter()
            .map(|b| (b.name, b))
            .collect()
    })
}

/// Registers `fn(&str) -> Result<Vec<AnyDelayed>, BoxError>` as the graph builder `name`.
#[macro_export]
macro_rules! graph_builder {
    ($name:expr, $build:path) => {
        $crate::__private::inventory::submit! {
            $crate::remote::GraphBuilder::new($name, $build)
        }
    };
}

/// A type whose values may cross between processes (a cluster worker's result read by another
/// worker or by the driver), registered at link time with [`wire_types!`](crate::wire_types).
pub struct WireType {
    spec: fn() -> SaveSpec,
}

impl WireType {
    /// A registry entry (use [`wire_types!`](crate::wire_types)).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(spec: fn() -> SaveSpec) -> Self {
        Self { spec }
    }
}

impl fmt::Debug for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireType")
            .field("type", &(self.spec)().type_name())
            .finish()
    }
}

inventory::collect!(WireType);

/// Registers serde types as [`WireType`]s: `brisk_graph::wire_types!(MyPartial, Vec<MyPartial>);`
#[macro_export]
macro_rules! wire_types {
    ($($t:ty),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::remote::WireType::new(|| $crate::SaveSpec::of::<$t>())
            }
        )+
    };
}

struct WireIndex {
    by_id: HashMap<TypeId, SaveSpec>,
    by_name: HashMap<&'static str, SaveSpec>,
}

fn wire_index() -> &'static WireIndex {
    static INDEX: OnceLock<WireIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let specs: Vec<SaveSpec> = inventory::iter::<WireType>
            .into_iter()
            .map(|w| (w.spec)())
            .collect();
        WireIndex {
            by_id: specs.iter().map(|s| (s.type_id(), *s)).collect(),
            by_name: specs.iter().map(|s| (s.type_name(), *s)).collect(),
        }
    })
}

/// How to encode `value`, if its type is a registered [`WireType`].
#[must_use]
pub fn wire_spec_of(value: &Value) -> Option<SaveSpec> {
    wire_index().by_id.get(&(**value).type_id()).copied()
}

/// How to decode a value of the registered [`WireType`] named `type_name`
/// ([`SaveSpec::type_name`]: the same in every process running the same binary).
#[must_use]
pub fn wire_spec_named(type_name: &str) -> Option<SaveSpec> {
    wire_index().by_name.get(type_name).copied()
}

crate::wire_types!(
    (),
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i8,
    i16,
    i32,
    i64,
    f32,
    f64,
    String,
    Vec<()>,
    Vec<u64>,
    Vec<i64>,
    Vec<f32>,
    Vec<f64>,
    Vec<String>,
);
