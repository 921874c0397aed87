//! Pinned reads: keys from the chunks' versions, the same while the data is unchanged, new
//! for a chunk that changed; a chunk that changes after opening fails the read.

use brisk_array::{Array, Axes};
use brisk_exec::ThreadedExecutor;
use brisk_graph::Key;
use brisk_zarr::{
    ArrayOptions, IoOptions, ZarrError, ZarrStore, from_zarr_with, open_array, to_zarr, write_tasks,
};
use ndarray::{ArrayD, IxDyn};

fn exec() -> ThreadedExecutor {
    ThreadedExecutor::new(2).unwrap()
}

fn pinned() -> IoOptions {
    IoOptions::new().pinned(true)
}

/// A 4 × 6 array of 2 × 3 chunks (four chunks) at `/x`.
fn stored(store: &ZarrStore) -> ArrayD<f64> {
    let x = ArrayD::from_shape_fn(IxDyn(&[4, 6]), |i| (i[0] * 6 + i[1]) as f64);
    let a = Array::from_ndarray(&x, &[2, 3]).unwrap();
    to_zarr(
        &a,
        store,
        "/x",
        None,
        &ArrayOptions::new().overwrite(),
        &exec(),
    )
    .unwrap();
    x
}

/// Rewrites chunk [1, 1] (rows 2..4, columns 3..6) with `v`.
fn rewrite_last_chunk(store: &ZarrStore, v: f64) {
    let target = open_array(store, "/x").unwrap();
    let block = Array::from_ndarray(&ArrayD::from_elem(IxDyn(&[2, 3]), v), &[2, 3]).unwrap();
    write_tasks(&block, &target, &[2, 3], IoOptions::new())
        .unwrap()
        .compute_with(&exec())
        .unwrap();
}

fn keys(store: &ZarrStore, io: IoOptions) -> (Vec<Key>, Key) {
    let a = from_zarr_with::<f64>(store, "/x", io).unwrap();
    let blocks = a
        .blocks()
        .unwrap()
        .iter()
        .map(|b| b.key().clone())
        .collect();
    let total = a.sum(Axes::All).blocks().unwrap()[0].key().clone();
    (blocks, total)
}

fn stores() -> Vec<(ZarrStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let obj = tempfile::tempdir().unwrap();
    vec![
        (ZarrStore::directory(dir.path()).unwrap(), dir),
        (ZarrStore::memory(), tempfile::tempdir().unwrap()),
        (ZarrStore::object_memory(), tempfile::tempdir().unwrap()),
        (ZarrStore::object_local(obj.path()).unwrap(), obj),
    ]
}

/// The contract of pinned reads, on one store (also run on S3, Azure and GCS emulators by
/// the cloud round trips).
pub(crate) fn pinned_contract(store: &ZarrStore) {
    keys_stay_while_the_data_does_and_change_with_a_chunk(store);
    a_chunk_that_changes_after_opening_fails_the_read_that_sees_it(store);
    a_chunk_replaced_while_it_is_streamed_is_never_mixed(store);
}

#[test]
fn pinned_reads_keep_their_contract_on_every_local_store() {
    for (store, _dir) in stores() {
        pinned_contract(&store);
    }
}

fn keys_stay_while_the_data_does_and_change_with_a_chunk(store: &ZarrStore) {
    let at = store.location().to_owned();
    stored(store);
    let (first, first_total) = keys(store, pinned());
    let (again, again_total) = keys(store, pinned());
    assert_eq!(first, again, "{at}: unchanged chunks keep their keys");
    assert_eq!(first_total, again_total, "{at}: and so do derived values");
    // Attributes do not change what the chunks decode to: the keys stay.
    let mut z = open_array(store, "/x").unwrap();
    let mut attributes = z.attributes();
    attributes.insert("history".into(), "pinned".into());
    z.set_attributes(attributes).unwrap();
    assert_eq!(keys(store, pinned()).0, first, "{at}: attributes changed");
    // Impure (the default): fresh keys on every open.
    let (impure, _) = keys(store, IoOptions::new());
    let (impure_again, _) = keys(store, IoOptions::new());
    assert!(
        impure.iter().zip(&impure_again).all(|(a, b)| a != b),
        "{at}"
    );

    rewrite_last_chunk(store, -1.0);
    let (after, after_total) = keys(store, pinned());
    assert_eq!(
        after[..3],
        first[..3],
        "{at}: untouched chunks keep their keys"
    );
    assert_ne!(
        after[3], first[3],
        "{at}: the rewritten chunk has a new key"
    );
    assert_ne!(
        after_total, first_total,
        "{at}: so does what is computed from it"
    );
    // And the new key reads the new data.
    let back = from_zarr_with::<f64>(store, "/x", pinned())
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(back[[3, 5]], -1.0, "{at}");
    assert_eq!(back[[1, 1]], 7.0, "{at}");
}

/// The [`ZarrError`] somewhere in `e`'s chain of sources.
fn zarr_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ZarrError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(z) = err.downcast_ref::<ZarrError>() {
            return Some(z);
        }
        cur = err.source();
    }
    None
}

fn a_chunk_that_changes_after_opening_fails_the_read_that_sees_it(store: &ZarrStore) {
    let at = store.location().to_owned();
    stored(store);
    // Read whole in chunk tasks, and streamed inside a fused consumer.
    for fused in [false, true] {
        rewrite_last_chunk(store, 5.0);
        let a = from_zarr_with::<f64>(store, "/x", pinned().fused(fused)).unwrap();
        rewrite_last_chunk(store, 6.0);
        let err = (&a * 2.0).sum(Axes::All).compute_with(&exec()).unwrap_err();
        let Some(ZarrError::Changed(c)) = zarr_error(&err) else {
            panic!("{at}, fused {fused}: not a Changed error: {err:?}");
        };
        assert_eq!(c.chunk, [1, 1], "{at}");
        assert_eq!(c.path, "/x", "{at}");
        assert_eq!(c.key, "x/c/1/1", "{at}");
        assert!(
            c.pinned.is_some() && c.now.is_some() && c.pinned != c.now,
            "{at}"
        );
        // Opened again, it reads the new data.
        let total = from_zarr_with::<f64>(store, "/x", pinned().fused(fused))
            .unwrap()
            .sum(Axes::All)
            .compute_with(&exec())
            .unwrap();
        let expected: f64 = (0..4)
            .flat_map(|r| (0..6).map(move |c| (r, c)))
            .map(|(r, c)| {
                if r >= 2 && c >= 3 {
                    6.0
                } else {
                    (r * 6 + c) as f64
                }
            })
            .sum();
        assert_eq!(total[[]], expected, "{at}, fused {fused}");
    }
}

/// A chunk replaced while a consumer streams it: the stream either finishes with the pinned
/// values (it kept reading the bytes it opened) or fails with `Changed` — never new values
/// under the pinned key, nor a mix.
fn a_chunk_replaced_while_it_is_streamed_is_never_mixed(store: &ZarrStore) {
    let at = store.location().to_owned();
    let x = stored(store);
    let a = from_zarr_with::<f64>(store, "/x", pinned()).unwrap();
    let last = a.block_sources().unwrap().pop().unwrap();
    let mut r = last.open(Vec::new()).unwrap();
    let mut got = vec![0.0; r.remaining()];
    r.read(&mut got[..2]).unwrap();
    rewrite_last_chunk(store, -7.0);
    let finished = r.read(&mut got[2..]).and_then(|()| r.finish());
    match finished {
        Ok(()) => {
            let pinned: Vec<f64> = x.slice(ndarray::s![2..4, 3..6]).iter().copied().collect();
            assert_eq!(got, pinned, "{at}: the pinned values, whole");
        }
        Err(e) => assert!(
            matches!(zarr_error(e.as_ref()), Some(ZarrError::Changed(_))),
            "{at}: {e}"
        ),
    }
}

#[test]
fn a_chunk_written_where_there_was_none_is_a_change_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = &ZarrStore::directory(dir.path()).unwrap();
    // All zeros with fill value 0: no chunk is stored.
    let zeros = Array::<f64>::zeros(&[4, 6], &[2, 3]).unwrap();
    to_zarr(&zeros, store, "/x", None, &ArrayOptions::new(), &exec()).unwrap();
    let a = from_zarr_with::<f64>(store, "/x", pinned()).unwrap();
    rewrite_last_chunk(store, 1.0);
    let err = a.sum(Axes::All).compute_with(&exec()).unwrap_err();
    let Some(ZarrError::Changed(c)) = zarr_error(&err) else {
        panic!("not a Changed error: {err:?}");
    };
    assert!(c.pinned.is_none() && c.now.is_some());
    assert!(
        zarr_error(&err)
            .unwrap()
            .to_string()
            .contains("then: absent"),
        "{err}"
    );
}
