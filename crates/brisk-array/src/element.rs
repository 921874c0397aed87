//! Element types of arrays.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Sub};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The element type of an array, by name (NumPy's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DType {
    /// `bool`
    Bool,
    /// `i8`
    Int8,
    /// `i16`
    Int16,
    /// `i32`
    Int32,
    /// `i64`
    Int64,
    /// `u8`
    UInt8,
    /// `u16`
    UInt16,
    /// `u32`
    UInt32,
    /// `u64`
    UInt64,
    /// `f32`
    Float32,
    /// `f64`
    Float64,
}

impl DType {
    /// NumPy's name of the type (`float32`, `int64`, `bool`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::UInt8 => "uint8",
            Self::UInt16 => "uint16",
            Self::UInt32 => "uint32",
            Self::UInt64 => "uint64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
        }
    }

    /// Size of one element in bytes.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::Int8 | Self::UInt8 => 1,
            Self::Int16 | Self::UInt16 => 2,
            Self::Int32 | Self::UInt32 | Self::Float32 => 4,
            Self::Int64 | Self::UInt64 | Self::Float64 => 8,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A type arrays can hold: the numbers and `bool`.
pub trait Element:
    Copy + Default + PartialOrd + Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// The type's name.
    const DTYPE: DType;
    /// The value as an `f64` (`true` is 1).
    fn to_f64(self) -> f64;
    /// The value nearest to `v` (saturating for integers; `v != 0` for `bool`).
    fn from_f64(v: f64) -> Self;
}

/// Numeric element types: arithmetic, sums and powers.
pub trait Number:
    Element + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// What sums accumulate in: `f64` for floats (so `f32` sums and means stay accurate),
    /// `i64`/`u64` for integers (wrapping, as NumPy).
    type Acc: Copy + Default + Send + Sync + Debug + Serialize + DeserializeOwned + 'static;
    /// Widens into the accumulator.
    fn widen(self) -> Self::Acc;
    /// Adds two accumulators.
    fn acc_add(a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The accumulator converted back to the element type.
    fn narrow(acc: Self::Acc) -> Self;
    /// The accumulator as an `f64`.
    fn acc_f64(acc: Self::Acc) -> f64;
    /// `self` to the integer power `n` (integers: wrapping; negative `n` gives 0 unless
    /// `|self| == 1`).
    fn powi(self, n: i32) -> Self;
    /// Absolute value (integers: wrapping for the minimum value).
    fn abs(self) -> Self;
    /// Zero.
    fn zero() -> Self;
    /// One.
    fn one() -> Self;
}

/// Floating-point element types.
pub trait Float: Number {
    /// Square root.
    fn sqrt(self) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `self` to the power `p`.
    fn powf(self, p: Self) -> Self;
}

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}

macro_rules! float {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "nearest value is the contract"
            )]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
        impl Number for $t {
            type Acc = f64;
            fn widen(self) -> f64 {
                f64::from(self)
            }
            fn acc_add(a: f64, b: f64) -> f64 {
                a + b
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "nearest value is the contract"
            )]
            fn narrow(acc: f64) -> Self {
                acc as $t
            }
            fn acc_f64(acc: f64) -> f64 {
                acc
            }
            #[inline]
            fn powi(self, n: i32) -> Self {
                // Exponentiation by squaring, inlined (std's powi calls into compiler-rt).
                let mut base = if n < 0 { 1.0 / self } else { self };
                let mut e = n.unsigned_abs();
                let mut acc: $t = 1.0;
                while e > 0 {
                    if e & 1 == 1 {
                        acc *= base;
                    }
                    base *= base;
                    e >>= 1;
                }
                acc
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn zero() -> Self {
                0.0
            }
            fn one() -> Self {
                1.0
            }
        }
        impl Float for $t {
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
        }
    };
}
float!(f32, Float32);
float!(f64, Float64);

macro_rules! int {
    ($t:ty, $d:ident, $acc:ty, $abs:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[allow(clippy::cast_precision_loss, reason = "as close as f64 gets")]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "saturating is the contract"
            )]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
        impl Number for $t {
            type Acc = $acc;
            fn widen(self) -> $acc {
                <$acc>::from(self)
            }
            fn acc_add(a: $acc, b: $acc) -> $acc {
                a.wrapping_add(b)
            }
            #[allow(clippy::cast_possible_truncation, reason = "wrapping, as NumPy")]
            fn narrow(acc: $acc) -> Self {
                acc as $t
            }
            #[allow(clippy::cast_precision_loss, reason = "as close as f64 gets")]
            fn acc_f64(acc: $acc) -> f64 {
                acc as f64
            }
            fn powi(self, n: i32) -> Self {
                match u32::try_from(n) {
                    Ok(n) => self.wrapping_pow(n),
                    Err(_) if self == 1 => 1,
                    #[allow(unused_comparisons, reason = "unsigned types never equal -1")]
                    Err(_) if (self as i128) == -1 => {
                        if n % 2 == 0 {
                            1 as $t
                        } else {
                            self
                        }
                    }
                    Err(_) => 0,
                }
            }
            fn abs(self) -> Self {
                let f: fn($t) -> $t = $abs;
                f(self)
            }
            fn zero() -> Self {
                0
            }
            fn one() -> Self {
                1
            }
        }
    };
}
int!(i8, Int8, i64, i8::wrapping_abs);
int!(i16, Int16, i64, i16::wrapping_abs);
int!(i32, Int32, i64, i32::wrapping_abs);
int!(i64, Int64, i64, i64::wrapping_abs);
int!(u8, UInt8, u64, |x| x);
int!(u16, UInt16, u64, |x| x);
int!(u32, UInt32, u64, |x| x);
int!(u64, UInt64, u64, |x| x);
