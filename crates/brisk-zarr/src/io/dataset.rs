//! Datasets: several arrays as the variables of one Zarr group, with dimension names,
//! coordinates, attributes and consolidated metadata — what xarray reads and writes.

use std::collections::BTreeMap;

use brisk_array::Array;
use brisk_graph::Executor;
use serde_json::{Map, Value, json};
use zarrs::storage::StorePrefix;

use super::*;
use crate::error::ZarrError;
use crate::meta::{ArrayOptions, ZarrElement, ZarrFormat};
use crate::store::ZarrStore;

/// A lazy array that can be written as a dataset variable, whatever its element type.
pub trait DatasetArray: Send + Sync {
    /// The array's shape.
    fn shape(&self) -> Vec<usize>;
    /// Writes it at `path` of `store` (as [`to_zarr`] does).
    ///
    /// # Errors
    /// As [`to_zarr`].
    fn write(
        &self,
        store: &ZarrStore,
        path: &str,
        options: &ArrayOptions,
        executor: &dyn Executor,
    ) -> Result<WriteSummary, ZarrError>;
}

impl<T: ZarrElement> DatasetArray for Array<T> {
    fn shape(&self) -> Vec<usize> {
        Array::shape(self)
    }

    fn write(
        &self,
        store: &ZarrStore,
        path: &str,
        options: &ArrayOptions,
        executor: &dyn Executor,
    ) -> Result<WriteSummary, ZarrError> {
        to_zarr(self, store, path, None, options, executor).map(|(_, summary)| summary)
    }
}

struct Entry<'a> {
    name: String,
    dims: Vec<String>,
    array: &'a dyn DatasetArray,
    attributes: Map<String, Value>,
}

/// Several lazy arrays described as the variables of one group, the way xarray sees a
/// dataset: each variable names its dimensions; a coordinate is a 1-d variable named after
/// its dimension; the group carries the dataset's attributes. Write it with
/// [`to_zarr_dataset`]; `xr.open_zarr` opens the result.
///
/// ```
/// use brisk_array::Array;
/// use brisk_exec::SequentialExecutor;
/// use brisk_zarr::{ArrayOptions, Dataset, ZarrStore, open_dataset, to_zarr_dataset};
///
/// let store = ZarrStore::memory();
/// let temperature = Array::<f32>::full(&[4, 3], &[2, 3], 20.5)?;
/// let time = Array::from_ndarray(&ndarray::arr1(&[0.0, 1.0, 2.0, 3.0]), &[4])?;
/// let ds = Dataset::new()
///     .coord("time", &time)
///     .variable("temperature", ["time", "x"], &temperature)
///     .attribute("title", "demo".into());
/// to_zarr_dataset(&ds, &store, "", &ArrayOptions::new(), &SequentialExecutor)?;
///
/// let opened = open_dataset(&store, "")?;
/// assert!(opened.is_consolidated());
/// assert_eq!(opened.dims()["time"], 4);
/// let t = opened.array::<f32>("temperature")?.compute_with(&SequentialExecutor)?;
/// assert_eq!(t[[3, 2]], 20.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct Dataset<'a> {
    entries: Vec<Entry<'a>>,
    attributes: Map<String, Value>,
}

impl std::fmt::Debug for Dataset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field(
                "variables",
                &self
                    .entries
                    .iter()
                    .map(|e| (&e.name, &e.dims))
                    .collect::<Vec<_>>(),
            )
            .field("attributes", &self.attributes)
            .finish()
    }
}

impl<'a> Dataset<'a> {
    /// An empty dataset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a data variable with its dimension names (one per axis).
    pub fn variable<S: Into<String>>(
        self,
        name: &str,
        dims: impl IntoIterator<Item = S>,
        array: &'a dyn DatasetArray,
    ) -> Self {
        self.variable_with_attributes(name, dims, array, Map::new())
    }

    /// Adds a data variable with its dimension names and attributes (`units`, …).
    pub fn variable_with_attributes<S: Into<String>>(
        mut self,
        name: &str,
        dims: impl IntoIterator<Item = S>,
        array: &'a dyn DatasetArray,
        attributes: Map<String, Value>,
    ) -> Self {
        self.entries.push(Entry {
            name: name.to_owned(),
            dims: dims.into_iter().map(Into::into).collect(),
            array,
            attributes,
        });
        self
    }

    /// Adds a coordinate: a 1-d array of the labels of dimension `name`.
    pub fn coord(self, name: &str, array: &'a dyn DatasetArray) -> Self {
        self.variable(name, [name], array)
    }

    /// Adds a coordinate with attributes.
    pub fn coord_with_attributes(
        self,
        name: &str,
        array: &'a dyn DatasetArray,
        attributes: Map<String, Value>,
    ) -> Self {
        self.variable_with_attributes(name, [name], array, attributes)
    }

    /// Adds an attribute of the dataset (the group).
    pub fn attribute(mut self, key: &str, value: Value) -> Self {
        self.attributes.insert(key.to_owned(), value);
        self
    }

    /// The size of every dimension, checked: every variable names one dimension per axis,
    /// a dimension has one size in every variable, a coordinate is 1-d, names are unique
    /// and usable as paths.
    ///
    /// # Errors
    /// [`ZarrError::BadOptions`] naming the variable and the dimension.
    pub fn dims(&self) -> Result<BTreeMap<String, usize>, ZarrError> {
        let bad = |m: String| Err(ZarrError::BadOptions(m));
        let mut dims: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut names = std::collections::HashSet::new();
        for e in &self.entries {
            if e.name.is_empty() || e.name.contains('/') || e.name.starts_with('.') {
                return bad(format!(
                    "dataset variable name `{}` must be non-empty, without `/` and not start with `.`",
                    e.name
                ));
            }
            if !names.insert(e.name.as_str()) {
                return bad(format!("dataset variable `{}` is given twice", e.name));
            }
            let shape = e.array.shape();
            if shape.len() != e.dims.len() {
                return bad(format!(
                    "dataset variable `{}` has {} axes but {} dimension names {:?}",
                    e.name,
                    shape.len(),
                    e.dims.len(),
                    e.dims
                ));
            }
            for (d, &n) in e.dims.iter().zip(&shape) {
                match dims.get(d) {
                    Some((m, first)) if *m != n => {
                        return bad(format!(
                            "dimension `{d}` has size {m} in `{first}` but {n} in `{}`",
                            e.name
                        ));
                    }
                    Some(_) => {}
                    None => {
                        dims.insert(d.clone(), (n, e.name.clone()));
                    }
                }
            }
        }
        Ok(dims.into_iter().map(|(k, (n, _))| (k, n)).collect())
    }
}

/// The path of child `name` of the node at `path` (normalized).
fn child(path: &str, name: &str) -> String {
    if path == "/" {
        format!("/{name}")
    } else {
        format!("{path}/{name}")
    }
}

fn put_json(store: &ZarrStore, path: &str, file: &str, value: &Value) -> Result<(), ZarrError> {
    let key = node_key(store, path, file)?;
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| store.error(e))?;
    store
        .storage()
        .set(&key, bytes.into())
        .map_err(|e| store.error(e))
}

fn get_json(store: &ZarrStore, path: &str, file: &str) -> Result<Option<Value>, ZarrError> {
    let key = node_key(store, path, file)?;
    let Some(bytes) = store.storage().get(&key).map_err(|e| store.error(e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ZarrError::Zarr {
            path: format!("{path} ({file})"),
            source: e.into(),
        })
}

fn erase(store: &ZarrStore, path: &str, file: &str) -> Result<(), ZarrError> {
    let key = node_key(store, path, file)?;
    store.storage().erase(&key).map_err(|e| store.error(e))
}

/// Writes `dataset` as the group at `path`: every variable an array below it (with its
/// dimension names — v3 `dimension_names`, v2 `_ARRAY_DIMENSIONS` — and attributes, and
/// `options`' format and codecs), then the group's metadata with the dataset's attributes
/// and **consolidated metadata** (v3: inline in the group's `zarr.json`, as zarr-python
/// writes it; v2: `.zmetadata`), so `xr.open_zarr` opens it with one metadata read.
///
/// The group's metadata is written last: a write that was interrupted leaves no group that
/// opens. Replacing a dataset (`options.overwrite`) first removes the old group's metadata
/// (so the old dataset no longer opens as complete), replaces each variable as [`to_zarr`]
/// does, removes the old variables the new dataset does not have, and writes the metadata.
///
/// # Errors
/// [`ZarrError::BadOptions`] for an inconsistent dataset (see [`Dataset::dims`]);
/// [`ZarrError::AlreadyExists`] unless `options.overwrite`; the errors of [`to_zarr`],
/// naming the variable's path.
pub fn to_zarr_dataset(
    dataset: &Dataset<'_>,
    store: &ZarrStore,
    path: &str,
    options: &ArrayOptions,
    executor: &dyn Executor,
) -> Result<BTreeMap<String, WriteSummary>, ZarrError> {
    dataset.dims()?;
    let path = norm_path(path)?;
    let v2 = options.format == ZarrFormat::V2;
    let old = match node_state(store, &path)? {
        NodeState::Absent => Vec::new(),
        _ if !options.overwrite => {
            return Err(ZarrError::AlreadyExists {
                location: store.location().into(),
                path,
            });
        }
        NodeState::Node if group_format(store, &path)?.is_none() => {
            // An array where the group goes: replaced.
            remove_node(store, &path, Some(executor))?;
            Vec::new()
        }
        _ => {
            let old: Vec<String> = child_arrays(store, &path)?.into_keys().collect();
            for (file, _) in GROUP_FILES {
                erase(store, &path, file)?;
            }
            old
        }
    };
    let mut written = BTreeMap::new();
    for e in &dataset.entries {
        let mut opts = options.clone().dimension_names(e.dims.iter().cloned());
        opts.attributes.extend(e.attributes.clone());
        if v2 && opts.fill_value.is_none() {
            // xarray reads a v2 array's fill value as its `_FillValue` and masks it (a 0 in
            // the data would read as NaN): a variable without a `_FillValue` has none.
            opts.fill_value = Some(
                e.attributes
                    .get("_FillValue")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        opts.overwrite = true;
        let summary = e
            .array
            .write(store, &child(&path, &e.name), &opts, executor)?;
        written.insert(e.name.clone(), summary);
    }
    for name in old {
        if !written.contains_key(&name) {
            remove_node(store, &child(&path, &name), Some(executor))?;
        }
    }
    let mut arrays = BTreeMap::new();
    for name in written.keys() {
        if let Some(meta) = ArrayMeta::read(store, &child(&path, name))? {
            arrays.insert(name.clone(), meta);
        }
    }
    write_group(store, &path, v2, &dataset.attributes, &arrays)?;
    Ok(written)
}

/// The files of a group's metadata, in the order they are removed (the one that makes it a
/// group first).
const GROUP_FILES: [(&str, bool); 4] = [
    (".zgroup", true),
    ("zarr.json", false),
    (".zmetadata", true),
    (".zattrs", true),
];

/// Writes the group's metadata with its consolidated metadata; the file that makes it a
/// group (`zarr.json`, or v2's `.zgroup`) last.
fn write_group(
    store: &ZarrStore,
    path: &str,
    v2: bool,
    attributes: &Map<String, Value>,
    arrays: &BTreeMap<String, ArrayMeta>,
) -> Result<(), ZarrError> {
    let mut metadata = Map::new();
    for (name, meta) in arrays {
        match meta {
            ArrayMeta::V3(m) => {
                metadata.insert(name.clone(), m.clone());
            }
            ArrayMeta::V2 { zarray, zattrs } => {
                metadata.insert(format!("{name}/.zarray"), zarray.clone());
                if let Some(a) = zattrs {
                    metadata.insert(format!("{name}/.zattrs"), a.clone());
                }
            }
        }
    }
    if v2 {
        metadata.insert(".zgroup".into(), json!({"zarr_format": 2}));
        metadata.insert(".zattrs".into(), Value::Object(attributes.clone()));
        put_json(store, path, ".zattrs", &Value::Object(attributes.clone()))?;
        put_json(
            store,
            path,
            ".zmetadata",
            &json!({"zarr_consolidated_format": 1, "metadata": metadata}),
        )?;
        put_json(store, path, ".zgroup", &json!({"zarr_format": 2}))
    } else {
        put_json(
            store,
            path,
            "zarr.json",
            &json!({
                "zarr_format": 3,
                "node_type": "group",
                "attributes": attributes,
                "consolidated_metadata": {
                    "kind": "inline",
                    "must_understand": false,
                    "metadata": metadata,
                },
            }),
        )
    }
}

/// Writes the consolidated metadata of the group at `path` anew from the arrays it holds now
/// (zarr-python's `consolidate_metadata`), keeping the group's attributes: one read then
/// describes every array of the group. Brisk keeps it current by itself when it writes into
/// a group that has it ([`to_zarr`], [`create_array`], [`ZarrArray::set_attributes`]).
///
/// # Errors
/// [`ZarrError::NotFound`] when there is no group at `path`.
pub fn consolidate_metadata(store: &ZarrStore, path: &str) -> Result<(), ZarrError> {
    let path = norm_path(path)?;
    let format = group_format(store, &path)?.ok_or_else(|| ZarrError::NotFound {
        location: store.location().into(),
        path: path.clone(),
    })?;
    let attributes = group_attributes(store, &path, format)?;
    let arrays = child_arrays(store, &path)?;
    write_group(store, &path, format == ZarrFormat::V2, &attributes, &arrays)
}

fn group_attributes(
    store: &ZarrStore,
    path: &str,
    format: ZarrFormat,
) -> Result<Map<String, Value>, ZarrError> {
    let found = match format {
        ZarrFormat::V3 => {
            get_json(store, path, "zarr.json")?.and_then(|g| g.get("attributes").cloned())
        }
        ZarrFormat::V2 => get_json(store, path, ".zattrs")?,
    };
    Ok(found
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default())
}

/// Runs `write`, which changes the array at `path` (normalized), keeping the consolidated
/// metadata of the group that holds it current: when that group has some, it is removed
/// first (so an interrupted write never leaves metadata describing arrays that changed) and
/// written again from the arrays as they are after the write, whether it succeeded or not.
pub(crate) fn keeping_parent_consolidated<R>(
    store: &ZarrStore,
    path: &str,
    write: impl FnOnce() -> Result<R, ZarrError>,
) -> Result<R, ZarrError> {
    let Some((parent, _)) = path.trim_end_matches('/').rsplit_once('/') else {
        return write();
    };
    let parent = if parent.is_empty() { "/" } else { parent };
    let consolidated = match group_metadata(store, parent)? {
        Some((ZarrFormat::V3, g)) => {
            let mut g = g.unwrap_or_default();
            let had = g
                .as_object_mut()
                .and_then(|o| o.remove("consolidated_metadata"))
                .is_some_and(|c| !c.is_null());
            if had {
                put_json(store, parent, "zarr.json", &g)?;
            }
            had
        }
        Some((ZarrFormat::V2, _)) => {
            let had = get_json(store, parent, ".zmetadata")?.is_some();
            if had {
                erase(store, parent, ".zmetadata")?;
            }
            had
        }
        None => false,
    };
    let result = write();
    if consolidated {
        let again = consolidate_metadata(store, parent);
        if result.is_ok() {
            again?;
        }
    }
    result
}

/// The format of the group at `path`, `None` when there is no group there.
fn group_format(store: &ZarrStore, path: &str) -> Result<Option<ZarrFormat>, ZarrError> {
    Ok(group_metadata(store, path)?.map(|(f, _)| f))
}

/// The format of the group at `path` and, for v3, its `zarr.json` (read once); `None` when
/// there is no group there.
fn group_metadata(
    store: &ZarrStore,
    path: &str,
) -> Result<Option<(ZarrFormat, Option<Value>)>, ZarrError> {
    if let Some(m) = get_json(store, path, "zarr.json")? {
        let group = m.get("node_type").and_then(Value::as_str) == Some("group");
        return Ok(group.then_some((ZarrFormat::V3, Some(m))));
    }
    let key = node_key(store, path, ".zgroup")?;
    let found = store.storage().get(&key).map_err(|e| store.error(e))?;
    Ok(found.map(|_| (ZarrFormat::V2, None)))
}

/// An array's metadata as stored, read once: v3 `zarr.json`, or v2 `.zarray` and `.zattrs`.
enum ArrayMeta {
    V3(Value),
    V2 {
        zarray: Value,
        zattrs: Option<Value>,
    },
}

impl ArrayMeta {
    /// The metadata of the array at `path`, `None` when there is no array there.
    fn read(store: &ZarrStore, path: &str) -> Result<Option<Self>, ZarrError> {
        if let Some(m) = get_json(store, path, "zarr.json")? {
            let array = m.get("node_type").and_then(Value::as_str) == Some("array");
            return Ok(array.then_some(Self::V3(m)));
        }
        let Some(zarray) = get_json(store, path, ".zarray")? else {
            return Ok(None);
        };
        let zattrs = get_json(store, path, ".zattrs")?;
        Ok(Some(Self::V2 { zarray, zattrs }))
    }

    /// One JSON object with the attributes under `attributes` (v2: `.zarray` with
    /// `.zattrs` folded in), as [`variable_info`] reads it.
    fn merged(self) -> Value {
        match self {
            Self::V3(m) => m,
            Self::V2 { mut zarray, zattrs } => {
                if let Some(o) = zarray.as_object_mut() {
                    o.insert("attributes".into(), zattrs.unwrap_or_else(|| json!({})));
                }
                zarray
            }
        }
    }
}

/// The arrays directly below the group at `path`, from a listing, with their metadata.
fn child_arrays(store: &ZarrStore, path: &str) -> Result<BTreeMap<String, ArrayMeta>, ZarrError> {
    let rel = path.trim_matches('/');
    let prefix = if rel.is_empty() {
        StorePrefix::root()
    } else {
        StorePrefix::new(format!("{rel}/")).map_err(|e| store.error(e))?
    };
    let listed = store
        .storage()
        .list_dir(&prefix)
        .map_err(|e| store.error(e))?;
    let mut out = BTreeMap::new();
    for p in listed.prefixes() {
        let name = p
            .as_str()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() || name.starts_with('.') {
            continue; // Brisk's own staging names, hidden files
        }
        if let Some(meta) = ArrayMeta::read(store, &child(path, &name))? {
            out.insert(name, meta);
        }
    }
    Ok(out)
}

/// CF encoding attributes of a variable (as xarray writes them), reported, never applied
/// silently: [`OpenDataset::array`] gives the stored values, [`OpenDataset::decoded`] the
/// values with `_FillValue` as NaN, then `scale_factor` and `add_offset` applied.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CfEncoding {
    /// `scale_factor`.
    pub scale_factor: Option<f64>,
    /// `add_offset`.
    pub add_offset: Option<f64>,
    /// `_FillValue` (or, in Zarr v2 without that attribute, the array's fill value), as
    /// stored.
    pub fill_value: Option<Value>,
    /// `units`.
    pub units: Option<String>,
    /// `calendar`.
    pub calendar: Option<String>,
    /// Other CF encoding attributes present and not decoded here (`missing_value`,
    /// `valid_range`, `dtype`, …).
    pub other: Vec<String>,
}

impl CfEncoding {
    fn of(attributes: &Map<String, Value>, v2_fill: Option<&Value>) -> Self {
        let num = |k: &str| attributes.get(k).and_then(Value::as_f64);
        let text = |k: &str| attributes.get(k).and_then(Value::as_str).map(str::to_owned);
        let fill_value = attributes
            .get("_FillValue")
            .cloned()
            .or_else(|| v2_fill.filter(|v| !v.is_null()).cloned());
        let other = [
            "missing_value",
            "valid_range",
            "valid_min",
            "valid_max",
            "dtype",
        ]
        .into_iter()
        .filter(|k| attributes.contains_key(*k))
        .map(str::to_owned)
        .collect();
        Self {
            scale_factor: num("scale_factor"),
            add_offset: num("add_offset"),
            fill_value,
            units: text("units"),
            calendar: text("calendar"),
            other,
        }
    }

    /// The fill value as a number (`"NaN"` and friends as Zarr spells them).
    fn fill_f64(&self) -> Option<f64> {
        match self.fill_value.as_ref()? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" | "nan" => Some(f64::NAN),
                "Infinity" | "inf" => Some(f64::INFINITY),
                "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
                _ => s.parse().ok(),
            },
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
}

/// One variable of an [`OpenDataset`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VariableInfo {
    /// Its name in the group.
    pub name: String,
    /// Its dimension names (empty strings where the array names none).
    pub dims: Vec<String>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The stored element type (`float32`, `int16`, …).
    pub dtype: String,
    /// Its attributes (without `_ARRAY_DIMENSIONS`).
    pub attributes: Map<String, Value>,
    /// Its CF encoding, as reported by its attributes.
    pub encoding: CfEncoding,
    /// Whether it is a coordinate: a 1-d variable named after its dimension, or one that a
    /// data variable lists in its `coordinates` attribute.
    pub is_coordinate: bool,
    metadata: Value,
}

/// A dataset opened from a Zarr group: its variables by name (data variables and
/// coordinates), dimensions and attributes. With consolidated metadata the whole dataset is
/// described by one read; without, by a listing and one read per array.
#[derive(Debug, Clone)]
pub struct OpenDataset {
    store: ZarrStore,
    path: String,
    format: ZarrFormat,
    consolidated: bool,
    attributes: Map<String, Value>,
    variables: BTreeMap<String, VariableInfo>,
}

/// Opens the group at `path` as a dataset (what `xr.open_zarr` would show). With consolidated
/// metadata this is one read (v3: the group's `zarr.json`; v2: `.zgroup` and `.zmetadata`),
/// and the variables' arrays open from it without reading their own metadata.
///
/// # Errors
/// [`ZarrError::NotFound`] when there is no group at `path`; [`ZarrError::Zarr`] for
/// metadata that does not parse.
pub fn open_dataset(store: &ZarrStore, path: &str) -> Result<OpenDataset, ZarrError> {
    let path = norm_path(path)?;
    let not_found = || ZarrError::NotFound {
        location: store.location().into(),
        path: path.clone(),
    };
    let (format, v3_group) = group_metadata(store, &path)?.ok_or_else(not_found)?;
    let (attributes, consolidated) = match format {
        ZarrFormat::V3 => {
            let g = v3_group.ok_or_else(not_found)?;
            let attrs = g
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let cons = g
                .pointer("/consolidated_metadata/metadata")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, v)| {
                            !k.contains('/')
                                && v.get("node_type").and_then(Value::as_str) == Some("array")
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                });
            (attrs, cons)
        }
        ZarrFormat::V2 => {
            let z = get_json(store, &path, ".zmetadata")?;
            let meta = z
                .as_ref()
                .and_then(|z| z.get("metadata"))
                .and_then(Value::as_object);
            let attrs = match meta {
                Some(m) => m.get(".zattrs").and_then(Value::as_object).cloned(),
                None => get_json(store, &path, ".zattrs")?.and_then(|v| v.as_object().cloned()),
            }
            .unwrap_or_default();
            let cons = meta.map(|m| {
                let mut arrays = BTreeMap::new();
                for (k, v) in m {
                    if let Some(name) = k.strip_suffix("/.zarray")
                        && !name.contains('/')
                    {
                        let meta = ArrayMeta::V2 {
                            zarray: v.clone(),
                            zattrs: m.get(&format!("{name}/.zattrs")).cloned(),
                        };
                        arrays.insert(name.to_owned(), meta.merged());
                    }
                }
                arrays
            });
            (attrs, cons)
        }
    };
    let is_consolidated = consolidated.is_some();
    let arrays: BTreeMap<String, Value> = match consolidated {
        Some(c) => c,
        None => child_arrays(store, &path)?
            .into_iter()
            .map(|(name, meta)| (name, meta.merged()))
            .collect(),
    };
    let mut variables = BTreeMap::new();
    for (name, meta) in arrays {
        variables.insert(name.clone(), variable_info(&name, meta, format)?);
    }
    let listed: std::collections::HashSet<String> = variables
        .values()
        .filter_map(|v| v.attributes.get("coordinates").and_then(Value::as_str))
        .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for v in variables.values_mut() {
        v.is_coordinate = (v.dims.len() == 1 && v.dims[0] == v.name) || listed.contains(&v.name);
    }
    Ok(OpenDataset {
        store: store.clone(),
        path,
        format,
        consolidated: is_consolidated,
        attributes,
        variables,
    })
}

/// What one array's metadata (v3 `zarr.json`, or v2 `.zarray` with its attributes under
/// `attributes`) says about it as a variable.
fn variable_info(name: &str, meta: Value, format: ZarrFormat) -> Result<VariableInfo, ZarrError> {
    let bad = |what: &str| ZarrError::Zarr {
        path: name.to_owned(),
        source: format!("array metadata without a valid `{what}`").into(),
    };
    let shape: Vec<usize> = meta
        .get("shape")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| bad("shape"))?;
    let mut attributes = meta
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let dims_value = meta
        .get("dimension_names")
        .filter(|v| !v.is_null())
        .cloned()
        .or_else(|| attributes.remove("_ARRAY_DIMENSIONS"));
    attributes.remove("_ARRAY_DIMENSIONS");
    let dims: Vec<String> = match dims_value {
        Some(v) => serde_json::from_value::<Vec<Option<String>>>(v)
            .map_err(|_| bad("dimension_names"))?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        None => vec![String::new(); shape.len()],
    };
    if dims.len() != shape.len() {
        return Err(bad("dimension_names (one per axis)"));
    }
    let v2_fill = (format == ZarrFormat::V2)
        .then(|| meta.get("fill_value"))
        .flatten();
    Ok(VariableInfo {
        name: name.to_owned(),
        dims,
        shape,
        dtype: crate::meta::stored_dtype(&meta),
        encoding: CfEncoding::of(&attributes, v2_fill),
        attributes,
        is_coordinate: false,
        metadata: meta,
    })
}

impl OpenDataset {
    /// The format of the group.
    #[must_use]
    pub fn format(&self) -> ZarrFormat {
        self.format
    }

    /// Whether the group has consolidated metadata (the dataset was described by one read).
    #[must_use]
    pub fn is_consolidated(&self) -> bool {
        self.consolidated
    }

    /// The dataset's (the group's) attributes.
    #[must_use]
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// Every variable, coordinates included, by name.
    #[must_use]
    pub fn variables(&self) -> &BTreeMap<String, VariableInfo> {
        &self.variables
    }

    /// The data variables (not coordinates), by name.
    pub fn data_variables(&self) -> impl Iterator<Item = &VariableInfo> {
        self.variables.values().filter(|v| !v.is_coordinate)
    }

    /// The coordinates, by name.
    pub fn coords(&self) -> impl Iterator<Item = &VariableInfo> {
        self.variables.values().filter(|v| v.is_coordinate)
    }

    /// The size of every named dimension.
    #[must_use]
    pub fn dims(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for v in self.variables.values() {
            for (d, &n) in v.dims.iter().zip(&v.shape) {
                if !d.is_empty() {
                    out.entry(d.clone()).or_insert(n);
                }
            }
        }
        out
    }

    fn info(&self, name: &str) -> Result<&VariableInfo, ZarrError> {
        self.variables.get(name).ok_or_else(|| ZarrError::NotFound {
            location: self.store.location().into(),
            path: child(&self.path, name),
        })
    }

    /// Variable `name` as a lazy array of its stored values (no CF decoding; see
    /// [`decoded`](Self::decoded)). With consolidated metadata, no metadata is read again.
    ///
    /// # Errors
    /// [`ZarrError::NotFound`] for an unknown name; [`ZarrError::WrongType`] when `T` is not
    /// the stored type.
    pub fn array<T: ZarrElement>(&self, name: &str) -> Result<Array<T>, ZarrError> {
        self.array_with(name, IoOptions::new())
    }

    /// [`array`](Self::array) with I/O options (pinned reads, …).
    ///
    /// # Errors
    /// As [`array`](Self::array).
    pub fn array_with<T: ZarrElement>(
        &self,
        name: &str,
        io: IoOptions,
    ) -> Result<Array<T>, ZarrError> {
        let info = self.info(name)?;
        let path = child(&self.path, name);
        let za = if self.consolidated {
            array_from_metadata(
                &self.store,
                &path,
                &without_v2_attributes(info, self.format),
            )?
        } else {
            open_array(&self.store, &path)?
        };
        from_opened(za, io)
    }

    /// Variable `name` decoded as xarray does by default: values equal to `_FillValue`
    /// become NaN, then `value * scale_factor + add_offset`; as `f64` whatever the stored
    /// numeric type. Without any of these attributes, the stored values as `f64`.
    ///
    /// # Errors
    /// As [`array`](Self::array); [`ZarrError::WrongType`] for a stored type that is not a
    /// number.
    pub fn decoded(&self, name: &str) -> Result<Array<f64>, ZarrError> {
        let info = self.info(name)?;
        let enc = info.encoding.clone();
        let fill = enc.fill_f64();
        let scale = enc.scale_factor.unwrap_or(1.0);
        let offset = enc.add_offset.unwrap_or(0.0);
        macro_rules! decode {
            ($t:ty) => {{
                let raw = self.array::<$t>(name)?;
                raw.mapv(move |v: $t| {
                    let x = brisk_array::Element::to_f64(v);
                    if fill.is_some_and(|f| x == f) {
                        f64::NAN
                    } else {
                        x * scale + offset
                    }
                })
            }};
        }
        Ok(match info.dtype.as_str() {
            "float64" => decode!(f64),
            "float32" => decode!(f32),
            "int8" => decode!(i8),
            "int16" => decode!(i16),
            "int32" => decode!(i32),
            "int64" => decode!(i64),
            "uint8" => decode!(u8),
            "uint16" => decode!(u16),
            "uint32" => decode!(u32),
            "uint64" => decode!(u64),
            other => {
                return Err(ZarrError::WrongType {
                    path: child(&self.path, name),
                    stored: other.to_owned(),
                    requested: "a number to decode".into(),
                });
            }
        })
    }
}

/// The metadata zarrs parses: v2's `.zarray` without the attributes folded in for reading.
fn without_v2_attributes(info: &VariableInfo, format: ZarrFormat) -> Value {
    let mut m = info.metadata.clone();
    if format == ZarrFormat::V2
        && let Some(o) = m.as_object_mut()
    {
        o.remove("attributes");
    }
    m
}
