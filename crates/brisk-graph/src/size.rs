//! [`SizeOf`]: the bytes a result holds, for the executor's hooks ([`TaskEnd::result_size`])
//! and for profilers that follow the bytes of results held.
//!
//! [`TaskEnd::result_size`]: crate::TaskEnd::result_size

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use crate::Value;

/// Bytes a value holds, its heap allocations included (an estimate where exact accounting
/// is impractical, like Dask's `sizeof`). Implemented for numbers, `bool`, `char`, `String`,
/// `Vec`, `Option`, `Box`, `Arc` (counted in full at every holder), tuples, maps and owned
/// `ndarray` arrays (feature `ndarray`); implement it for your own result types and register
/// them with a profiler (`brisk_profile::CacheProfiler::with_size_of`). [`size_of_value`]
/// measures results of the built-in types behind a [`Value`].
pub trait SizeOf {
    /// The value's size in bytes.
    fn size_of(&self) -> usize;
}

macro_rules! size_of_plain {
    ($($t:ty),*) => {$(
        impl SizeOf for $t {
            fn size_of(&self) -> usize {
                std::mem::size_of::<$t>()
            }
        }
    )*};
}
size_of_plain!(
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl SizeOf for String {
    fn size_of(&self) -> usize {
        std::mem::size_of::<Self>() + self.capacity()
    }
}

impl SizeOf for str {
    fn size_of(&self) -> usize {
        self.len()
    }
}

impl<T: SizeOf> SizeOf for Vec<T> {
    fn size_of(&self) -> usize {
        let spare = self.capacity() - self.len();
        std::mem::size_of::<Self>()
            + spare * std::mem::size_of::<T>()
            + self.iter().map(SizeOf::size_of).sum::<usize>()
    }
}

impl<T: SizeOf> SizeOf for [T] {
    fn size_of(&self) -> usize {
        self.iter().map(SizeOf::size_of).sum()
    }
}

impl<T: SizeOf> SizeOf for Option<T> {
    fn size_of(&self) -> usize {
        match self {
            Some(v) => std::mem::size_of::<Self>() - std::mem::size_of::<T>() + v.size_of(),
            None => std::mem::size_of::<Self>(),
        }
    }
}

impl<T: SizeOf + ?Sized> SizeOf for Box<T> {
    fn size_of(&self) -> usize {
        std::mem::size_of::<Self>() + (**self).size_of()
    }
}

impl<T: SizeOf + ?Sized> SizeOf for Arc<T> {
    fn size_of(&self) -> usize {
        std::mem::size_of::<Self>() + (**self).size_of()
    }
}

macro_rules! size_of_map {
    ($($map:ident [$($extra:ident),*]),*) => {$(
        impl<K: SizeOf, V: SizeOf, $($extra),*> SizeOf for $map<K, V, $($extra),*> {
            fn size_of(&self) -> usize {
                std::mem::size_of::<Self>()
                    + self
                        .iter()
                        .map(|(k, v)| k.size_of() + v.size_of())
                        .sum::<usize>()
            }
        }
    )*};
}
size_of_map!(HashMap [S], BTreeMap []);

macro_rules! size_of_tuple {
    ($($name:ident),+) => {
        impl<$($name: SizeOf),+> SizeOf for ($($name,)+) {
            #[allow(non_snake_case, reason = "tuple fields named after their types")]
            fn size_of(&self) -> usize {
                let ($($name,)+) = self;
                0 $(+ $name.size_of())+
            }
        }
    };
}
size_of_tuple!(A);
size_of_tuple!(A, B);
size_of_tuple!(A, B, C);
size_of_tuple!(A, B, C, D);

#[cfg(feature = "ndarray")]
impl<T: SizeOf, D: ndarray::Dimension> SizeOf for ndarray::Array<T, D> {
    fn size_of(&self) -> usize {
        // Elements are stored inline; only heap-owning elements add more.
        std::mem::size_of::<Self>() + self.iter().map(SizeOf::size_of).sum::<usize>()
    }
}

type Sizer = Arc<dyn Fn(&(dyn Any + Send + Sync)) -> Option<usize> + Send + Sync>;

fn sizer<T: SizeOf + Any>() -> (TypeId, Sizer) {
    (
        TypeId::of::<T>(),
        Arc::new(|v: &(dyn Any + Send + Sync)| v.downcast_ref::<T>().map(SizeOf::size_of)),
    )
}

/// Plain-element arrays are measured from their length, not element by element.
#[cfg(feature = "ndarray")]
fn array_sizer<T: Any, D: ndarray::Dimension + 'static>() -> (TypeId, Sizer) {
    (
        TypeId::of::<ndarray::Array<T, D>>(),
        Arc::new(|v: &(dyn Any + Send + Sync)| {
            v.downcast_ref::<ndarray::Array<T, D>>().map(|a| {
                std::mem::size_of::<ndarray::Array<T, D>>() + a.len() * std::mem::size_of::<T>()
            })
        }),
    )
}

fn plain_vec_sizer<T: Any>() -> (TypeId, Sizer) {
    (
        TypeId::of::<Vec<T>>(),
        Arc::new(|v: &(dyn Any + Send + Sync)| {
            v.downcast_ref::<Vec<T>>()
                .map(|a| std::mem::size_of::<Vec<T>>() + a.capacity() * std::mem::size_of::<T>())
        }),
    )
}

macro_rules! builtin_sizers {
    ($map:ident; $($t:ty),*) => {$(
        $map.extend([sizer::<$t>(), plain_vec_sizer::<$t>(), sizer::<Vec<Vec<$t>>>()]);
        #[cfg(feature = "ndarray")]
        $map.extend([
            sizer::<Vec<ndarray::ArrayD<$t>>>(),
            array_sizer::<$t, ndarray::IxDyn>(),
            array_sizer::<$t, ndarray::Ix0>(),
            array_sizer::<$t, ndarray::Ix1>(),
            array_sizer::<$t, ndarray::Ix2>(),
            array_sizer::<$t, ndarray::Ix3>(),
            array_sizer::<$t, ndarray::Ix4>(),
        ]);
    )*};
}

fn builtin() -> HashMap<TypeId, Sizer> {
    let mut map = HashMap::new();
    builtin_sizers!(map; i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool, usize, isize);
    map.extend([
        sizer::<String>(),
        sizer::<Vec<String>>(),
        sizer::<()>(),
        sizer::<char>(),
    ]);
    map
}

/// The size of a result of one of the built-in types (those listed on [`SizeOf`]'s built-in
/// table: numbers, `bool`, `char`, `()`, `String`, `Vec<String>`, and for the numeric types
/// `Vec<T>`, `Vec<Vec<T>>`, `Vec<ArrayD<T>>` and owned `ndarray` arrays of 0 to 4 dimensions
/// and dynamic ones); `None` for any other type, never a guess.
#[must_use]
pub fn size_of_value(v: &Value) -> Option<usize> {
    static BUILTIN: LazyLock<HashMap<TypeId, Sizer>> = LazyLock::new(builtin);
    let v: &(dyn Any + Send + Sync) = &**v;
    BUILTIN.get(&v.type_id()).and_then(|f| f(v))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::size_of_value;
    use crate::Value;

    #[test]
    fn built_in_types_are_measured_and_others_are_unknown() {
        let v: Value = Arc::new(vec![1.0f32; 10]);
        assert_eq!(size_of_value(&v), Some(24 + 40));
        let s: Value = Arc::new(String::from("abc"));
        assert_eq!(size_of_value(&s), Some(24 + 3));
        #[cfg(feature = "ndarray")]
        {
            let a: Value = Arc::new(ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[3, 4])));
            let inline = std::mem::size_of::<ndarray::ArrayD<f64>>();
            assert_eq!(size_of_value(&a), Some(inline + 12 * 8));
        }
        struct Mine(#[allow(dead_code, reason = "only its type matters")] u64);
        let m: Value = Arc::new(Mine(1));
        assert_eq!(size_of_value(&m), None, "never a guess for an unknown type");
    }
}
