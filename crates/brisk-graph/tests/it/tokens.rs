//! Tokenization: what must differ, what must not.

use std::collections::{BTreeMap, HashMap};

use brisk_graph::{Tokenize, lit};
use ndarray::{Array2, ArrayD, IxDyn, ShapeBuilder};
use proptest::prelude::*;
use serde::Serialize;

#[test]
fn numbers_strings_and_bools_differ() {
    let tokens = [
        1i64.token().unwrap(),
        1u64.token().unwrap(),
        1.0f64.token().unwrap(),
        1.0f32.token().unwrap(),
        "1".token().unwrap(),
        true.token().unwrap(),
        '1'.token().unwrap(),
        Some(1i64).token().unwrap(),
        vec![1i64].token().unwrap(),
        (1i64,).token().unwrap(),
    ];
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn integers_are_widened_within_signedness() {
    assert_eq!(1i8.token().unwrap(), 1i64.token().unwrap());
    assert_eq!(1u16.token().unwrap(), 1u64.token().unwrap());
    assert_ne!(1i32.token().unwrap(), 1u32.token().unwrap());
}

#[test]
fn floats_hash_by_bit_pattern() {
    assert_ne!(0.0f64.token().unwrap(), (-0.0f64).token().unwrap());
    assert_eq!(f64::NAN.token().unwrap(), f64::NAN.token().unwrap());
    let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
    assert_ne!(f64::NAN.token().unwrap(), other_nan.token().unwrap());
}

#[test]
fn strings_and_owned_strings_agree() {
    assert_eq!("abc".token().unwrap(), String::from("abc").token().unwrap());
    // Length prefixes keep concatenations apart.
    assert_ne!(("ab", "c").token().unwrap(), ("a", "bc").token().unwrap());
}

#[test]
fn a_byte_string_token_is_that_of_serde_bytes_not_of_a_byte_sequence() {
    struct AsBytes<'a>(&'a [u8]);
    impl Serialize for AsBytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    for bytes in [&b""[..], b"abc", &[7u8; 300]] {
        let t = brisk_graph::bytes_token(bytes);
        assert_eq!(t, brisk_graph::serde_token(&AsBytes(bytes)).unwrap());
        assert_ne!(t, bytes.to_vec().token().unwrap());
    }
    assert_ne!(
        brisk_graph::bytes_token(b"ab"),
        brisk_graph::bytes_token(b"abc")
    );
}

#[test]
fn maps_ignore_insertion_order() {
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    for i in 0..100 {
        a.insert(format!("k{i}"), i);
    }
    for i in (0..100).rev() {
        b.insert(format!("k{i}"), i);
    }
    assert_eq!(a.token().unwrap(), b.token().unwrap());
    let c: BTreeMap<String, i32> = a.clone().into_iter().collect();
    assert_eq!(a.token().unwrap(), c.token().unwrap());
    b.insert("k0".into(), -1);
    assert_ne!(a.token().unwrap(), b.token().unwrap());
}

#[derive(Serialize)]
struct A {
    x: i32,
}
#[derive(Serialize)]
struct B {
    x: i32,
}
#[derive(Serialize)]
struct Renamed {
    y: i32,
}

#[test]
fn struct_and_field_names_are_part_of_the_token() {
    assert_ne!(A { x: 1 }.token().unwrap(), B { x: 1 }.token().unwrap());
    assert_ne!(
        A { x: 1 }.token().unwrap(),
        Renamed { y: 1 }.token().unwrap()
    );
}

#[test]
fn ndarray_fast_path_covers_layout_and_type() {
    let a = Array2::from_shape_vec((2, 3), vec![1.0f64, 2., 3., 4., 5., 6.]).unwrap();
    // Same logical content in Fortran order: same token.
    let f = Array2::from_shape_vec((2, 3).f(), vec![1.0f64, 4., 2., 5., 3., 6.]).unwrap();
    assert_eq!(a, f);
    assert_eq!(a.token().unwrap(), f.token().unwrap());
    // Same bytes, other shape: different.
    let b = a.clone().into_shape_with_order((3, 2)).unwrap();
    assert_ne!(a.token().unwrap(), b.token().unwrap());
    // Dynamic dimension with the same shape: same token.
    let d: ArrayD<f64> = a.clone().into_dyn();
    assert_eq!(d.token().unwrap(), a.token().unwrap());
    // Same values, other element type: different.
    let s = a.mapv(|x| x as f32);
    assert_ne!(s.token().unwrap(), a.token().unwrap());
    // A changed element: different.
    let mut c = a.clone();
    c[[1, 2]] = 6.5;
    assert_ne!(c.token().unwrap(), a.token().unwrap());
    let z = ArrayD::<u8>::zeros(IxDyn(&[0, 4]));
    assert_ne!(
        z.token().unwrap(),
        ArrayD::<u8>::zeros(IxDyn(&[4, 0])).token().unwrap()
    );
}

#[test]
fn literal_keys_follow_tokens() {
    assert_eq!(lit(vec![1, 2]).key(), lit(vec![1, 2]).key());
    assert_ne!(lit(vec![1, 2]).key(), lit(vec![2, 1]).key());
    assert!(lit(1).key().to_string().starts_with("lit/"));
}

proptest! {
    #[test]
    fn equal_values_give_equal_tokens(v in proptest::collection::vec(any::<i64>(), 0..50), s in ".*") {
        prop_assert_eq!((v.clone(), s.clone()).token().unwrap(), (v, s).token().unwrap());
    }

    #[test]
    fn different_vectors_give_different_tokens(
        a in proptest::collection::vec(any::<u32>(), 0..20),
        b in proptest::collection::vec(any::<u32>(), 0..20),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(a.token().unwrap(), b.token().unwrap());
    }
}
