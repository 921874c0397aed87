//! A loaded value is always the value a fresh compute gives: saves that would not round-trip
//! are refused (nothing stored), every scope reads with its own encoder, empty chains keep
//! their saves in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use brisk_checkpoint::{
    CheckpointError, Compressor, Encoder, Encrypter, MemoryStore, Serializer, Stage, Storage, Store,
};
use brisk_exec::SequentialExecutor;
use brisk_graph::{TaskSpec, chain};
use proptest::prelude::*;

fn checkpointed<T>(name: &'static str, v: T) -> brisk_graph::Delayed<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    TaskSpec::new(name)
        .pure()
        .call(|v: T| v, (v,))
        .checkpointed()
}

#[test]
fn non_finite_floats_are_refused_by_json_and_kept_exactly_by_messagepack() {
    let store = MemoryStore::new();
    let storage = Storage::new(store.clone());
    let x = checkpointed("nan", vec![1.0, f64::NAN, f64::INFINITY, -0.0]);
    let err = x
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("NaN") && text.contains("json") && text.contains(&x.storage_key()),
        "{text}"
    );
    assert!(
        store.list("").unwrap().is_empty(),
        "a lossy entry was stored"
    );

    let mp =
        Storage::new(store.clone()).encoder(Encoder::new().serializer(Serializer::MessagePack));
    x.compute_with_options(&SequentialExecutor, &mp.options())
        .unwrap();
    let loaded = x
        .compute_with_options(&SequentialExecutor, &mp.options())
        .unwrap();
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&loaded), bits(&[1.0, f64::NAN, f64::INFINITY, -0.0]));
}

#[test]
fn nested_options_that_collapse_are_refused_by_every_serde_format() {
    for s in [Serializer::Json, Serializer::Yaml, Serializer::MessagePack] {
        let store = MemoryStore::new();
        let storage = Storage::new(store.clone()).encoder(Encoder::new().serializer(s));
        for x in [
            checkpointed("some-none", Some(None::<i64>)),
            checkpointed("some-none-2", Some(None::<i64>)),
        ] {
            let err = x
                .compute_with_options(&SequentialExecutor, &storage.options())
                .unwrap_err();
            assert!(
                chain(&err).contains("would not load back identically"),
                "{s:?}: {}",
                chain(&err)
            );
        }
        let unit = checkpointed("some-unit", Some(()));
        assert!(
            unit.compute_with_options(&SequentialExecutor, &storage.options())
                .is_err(),
            "{s:?}: Some(()) stored"
        );
        assert!(
            store.list("").unwrap().is_empty(),
            "{s:?}: a lossy entry was stored"
        );
    }
}

#[test]
fn an_empty_chain_keeps_saves_in_memory() {
    let storage = Storage::chain(Vec::<Arc<dyn Store>>::new());
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let x = TaskSpec::new("counted")
        .pure()
        .captures_covered_by_args() // a run counter: it does not change the value
        .call(
            move |v: i64| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                v * 2
            },
            (21,),
        )
        .checkpointed();
    assert_eq!(
        x.compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        42
    );
    assert!(storage.contains(&x).unwrap(), "the save went nowhere");
    assert_eq!(
        x.compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        42
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn every_scope_decodes_with_its_own_encoder() {
    let outer_store = MemoryStore::new();
    let outer = Storage::new(outer_store.clone()).encoder(
        Encoder::new()
            .serializer(Serializer::MessagePack)
            .encrypter(Encrypter::from_key([3; 32])),
    );
    let x = checkpointed("mixed", BTreeMap::from([(1i64, 2.5f64), (2, -1.0)]));
    x.compute_with_options(&SequentialExecutor, &outer.options())
        .unwrap();
    // A nested JSON scope in front of the encrypted MessagePack one: the outer entry loads.
    let inner_store = MemoryStore::new();
    let nested = Storage::new(inner_store.clone())
        .encoder(Encoder::new().compressor(Compressor::Zstd { level: 1 }))
        .nested_in(&outer);
    let loaded = x
        .compute_with_options(&SequentialExecutor, &nested.options())
        .unwrap();
    assert_eq!(loaded, BTreeMap::from([(1i64, 2.5f64), (2, -1.0)]));
    assert!(inner_store.list("").unwrap().is_empty());
    // A new value nested saves with the inner encoder, readable through the inner scope.
    let y = checkpointed("inner-only", vec![1u8, 2, 3]);
    y.compute_with_options(&SequentialExecutor, &nested.options())
        .unwrap();
    let bytes = inner_store.get(&y.storage_key()).unwrap().unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "inner entries are zstd frames"
    );
}

/// A value with what serde formats find hard: options of options, unit, non-finite floats,
/// maps with non-string keys, 128-bit integers, `f32`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Hard {
    nested: Option<Option<i64>>,
    unit: Option<()>,
    float: f64,
    single: f32,
    map: BTreeMap<i64, String>,
    big: i128,
    ubig: u128,
    list: Vec<Option<f32>>,
}

fn hard() -> impl Strategy<Value = Hard> {
    let float = prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        -1e6..1e6f64
    ];
    let single = prop_oneof![any::<f32>(), Just(f32::NAN), -1e3..1e3f32];
    (
        any::<Option<Option<i64>>>(),
        any::<Option<()>>(),
        float,
        single,
        proptest::collection::btree_map(any::<i64>(), "[a-z]{0,4}", 0..4),
        any::<i128>(),
        any::<u128>(),
        proptest::collection::vec(proptest::option::of(-1e3..1e3f32), 0..4),
    )
        .prop_map(|(nested, unit, float, single, map, big, ubig, list)| Hard {
            nested,
            unit,
            float,
            single,
            map,
            big,
            ubig,
            list,
        })
}

fn encoders() -> Vec<Encoder> {
    let mut out = Vec::new();
    for s in [Serializer::Json, Serializer::Yaml, Serializer::MessagePack] {
        for zstd in [false, true] {
            for aes in [false, true] {
                let mut e = Encoder::new().serializer(s);
                e = if zstd { e } else { e.no_compressor() };
                if aes {
                    e = e.encrypter(Encrypter::from_key([9; 32]));
                }
                out.push(e);
            }
        }
    }
    out
}

/// Bit-level equality (floats by bit pattern, so NaN equals NaN).
fn same(a: &Hard, b: &Hard) -> bool {
    brisk_graph::serde_token(a).unwrap() == brisk_graph::serde_token(b).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_encoder_loads_the_original_or_refuses_and_stores_nothing(v in hard()) {
        for enc in encoders() {
            let store = MemoryStore::new();
            let storage = Storage::new(store.clone()).encoder(enc.clone());
            let x = checkpointed("hard", v.clone());
            match x.compute_with_options(&SequentialExecutor, &storage.options()) {
                Ok(first) => {
                    prop_assert!(same(&first, &v));
                    let loaded = x
                        .compute_with_options(&SequentialExecutor, &storage.options())
                        .unwrap();
                    prop_assert!(same(&loaded, &v), "{enc:?}: {loaded:?} != {v:?}");
                }
                Err(e) => {
                    prop_assert!(store.list("").unwrap().is_empty(), "{enc:?}: stored after {e}");
                    let text = chain(&e);
                    prop_assert!(text.contains(&x.storage_key()), "{text}");
                }
            }
        }
    }
}

#[test]
fn a_refused_save_is_an_encode_error_naming_the_serializer() {
    let enc = Encoder::new();
    let x = checkpointed("nan2", vec![f64::NAN]);
    let g = brisk_graph::Graph::new([&x]);
    let spec = *g.node(g.outputs()[0]).save_spec().unwrap();
    let value: brisk_graph::Value = Arc::new(vec![f64::NAN]);
    let err = enc.encode_exact(&spec, &value, "k/nan").unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Encode {
                stage: Stage::Serializer("json"),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn representable_values_are_stored_by_every_encoder() {
    let v = Hard {
        nested: Some(Some(-7)),
        unit: None,
        float: 0.1 + 0.2,
        single: 1.0e-7,
        map: BTreeMap::from([(-3, "a".into()), (9, String::new())]),
        big: -(1i128 << 100),
        ubig: u128::MAX,
        list: vec![Some(0.5), None, Some(-2.25)],
    };
    for enc in encoders() {
        let storage = Storage::new(MemoryStore::new()).encoder(enc.clone());
        let x = checkpointed("representable", v.clone());
        let r = x.compute_with_options(&SequentialExecutor, &storage.options());
        assert!(
            r.is_ok(),
            "{enc:?}: {}",
            r.err().map(|e| chain(&e)).unwrap_or_default()
        );
        let loaded = x
            .compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap();
        assert!(same(&loaded, &v), "{enc:?}");
    }
}
