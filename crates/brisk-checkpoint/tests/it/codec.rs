//! The encoder chain: formats, order, corruption, encryption.

use std::collections::BTreeMap;
use std::sync::Arc;

use brisk_checkpoint::{
    CheckpointError, Compressor, Encoder, Encrypter, KdfParams, MemoryStore, PreEncoder,
    Serializer, Stage, Store,
};
use brisk_graph::{BoxError, SaveSpec, TaskSpec, Value};
use ndarray::{Array2, ArrayD, IxDyn};

/// The save spec of a checkpointed value of type `T` (taken from a real node).
fn spec<T>() -> SaveSpec
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + Default + Clone + 'static,
{
    let d = TaskSpec::new("s")
        .pure()
        .call(|| T::default(), ())
        .checkpointed();
    let g = brisk_graph::Graph::new([&d]);
    *g.node(g.outputs()[0]).save_spec().unwrap()
}

fn value<T: Send + Sync + 'static>(v: T) -> Value {
    Arc::new(v)
}

#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
struct Point {
    x: i64,
    y: i64,
}

/// The payload of an entry with neither compressor nor encrypter, after checking its
/// integrity header (`BRISK\x01` + CRC-32 of the rest); other entries as they are.
pub(crate) fn payload(bytes: &[u8]) -> Vec<u8> {
    match bytes.strip_prefix(b"BRISK\x01") {
        Some(rest) => {
            let (crc, body) = rest.split_at(4);
            assert_eq!(
                crc,
                crc32fast::hash(body).to_le_bytes(),
                "CRC-32 of the payload"
            );
            body.to_vec()
        }
        None => bytes.to_vec(),
    }
}

/// `payload` framed as an uncompressed, unencrypted entry.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = b"BRISK\x01".to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes and decodes `v`, and returns the stored bytes (the payload, for entries that
/// carry an integrity header).
fn roundtrip<T>(enc: &Encoder, v: T) -> Vec<u8>
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + Default
        + Clone
        + PartialEq
        + std::fmt::Debug
        + 'static,
{
    let s = spec::<T>();
    let bytes = enc.encode(&s, &value(v.clone()), "k/1").unwrap();
    let back = enc.decode(&s, &bytes, "k/1").unwrap();
    assert_eq!(back.downcast_ref::<T>(), Some(&v));
    payload(&bytes)
}

#[test]
fn serializers_write_what_their_readers_expect() {
    let p = Point { x: 1, y: 2 };
    let raw = Encoder::new().no_compressor();
    assert_eq!(
        roundtrip(&raw.clone().serializer(Serializer::Json), p.clone()),
        br#"{"x":1,"y":2}"#
    );
    assert_eq!(
        roundtrip(&raw.clone().serializer(Serializer::Yaml), p.clone()),
        b"x: 1\ny: 2\n"
    );
    // MessagePack: a map of two entries (0x82), named fields.
    let mp = roundtrip(&raw.clone().serializer(Serializer::MessagePack), p.clone());
    assert_eq!(mp, [0x82, 0xa1, b'x', 1, 0xa1, b'y', 2]);
    // npy: NumPy's magic and a header naming the dtype and shape.
    let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
    let npy = roundtrip(&raw.clone().serializer(Serializer::Npy), a);
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&npy[10..80]);
    assert!(
        header.contains("'descr': '<f8'") && header.contains("(3, 4)"),
        "{header}"
    );
    roundtrip(
        &raw.clone().serializer(Serializer::Npy),
        ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![true, false, false, true]).unwrap(),
    );
    // Raw bytes without a serializer.
    assert_eq!(
        roundtrip(&raw.clone().no_serializer(), b"bytes".to_vec()),
        b"bytes"
    );
    // Every serializer, compressed and encrypted.
    let enc = Encrypter::from_key([7; 32]);
    for s in [Serializer::Json, Serializer::Yaml, Serializer::MessagePack] {
        let e = Encoder::new().serializer(s).encrypter(enc.clone());
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), vec![1.5f64, -2.0]);
        roundtrip(&e, m);
        roundtrip(&e, String::from("text"));
    }
}

#[test]
fn zstd_frames_declare_their_content_size() {
    let bytes = roundtrip(&Encoder::new(), vec![0u32; 1000]);
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&bytes).unwrap(),
        Some(serde_json::to_vec(&vec![0u32; 1000]).unwrap().len() as u64)
    );
    let fast = Encoder::new().compressor(Compressor::Zstd { level: 1 });
    roundtrip(&fast, vec![3u8; 10_000]);
}

/// Adds `by` to field `x`; records the order of calls.
#[derive(Debug)]
struct AddX {
    by: i64,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}
impl PreEncoder for AddX {
    fn name(&self) -> &str {
        "add-x"
    }
    fn encode(&self, mut v: serde_json::Value) -> Result<serde_json::Value, BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("encode +{}", self.by));
        let x = v["x"].as_i64().ok_or("no x")?;
        v["x"] = (x + self.by).into();
        Ok(v)
    }
    fn decode(&self, mut v: serde_json::Value) -> Result<serde_json::Value, BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("decode +{}", self.by));
        let x = v["x"].as_i64().ok_or("no x")?;
        v["x"] = (x - self.by).into();
        Ok(v)
    }
}

/// Multiplies field `x` by `by`.
#[derive(Debug)]
struct MulX {
    by: i64,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}
impl PreEncoder for MulX {
    fn name(&self) -> &str {
        "mul-x"
    }
    fn encode(&self, mut v: serde_json::Value) -> Result<serde_json::Value, BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("encode *{}", self.by));
        v["x"] = (v["x"].as_i64().ok_or("no x")? * self.by).into();
        Ok(v)
    }
    fn decode(&self, mut v: serde_json::Value) -> Result<serde_json::Value, BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("decode *{}", self.by));
        let x = v["x"].as_i64().ok_or("no x")?;
        if x % self.by != 0 {
            return Err(format!("{x} is not a multiple of {}", self.by).into());
        }
        v["x"] = (x / self.by).into();
        Ok(v)
    }
}

#[test]
fn pre_encoders_run_in_order_and_are_undone_in_reverse() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let enc = Encoder::new()
        .no_compressor()
        .pre_encoder(AddX {
            by: 1,
            log: log.clone(),
        })
        .pre_encoder(MulX {
            by: 10,
            log: log.clone(),
        });
    // (1 + 1) * 10 = 20 on disk; decoding in the wrong order would give 20 / 10 - 1 = 1 only
    // by luck, so use a value where the orders differ: (5 + 1) * 10 = 60 → 60/10 - 1 = 5,
    // whereas 60 - 1 = 59 is not a multiple of 10 (the mul decoder would refuse it).
    let bytes = roundtrip(&enc, Point { x: 5, y: 2 });
    assert_eq!(bytes, br#"{"x":60,"y":2}"#);
    assert_eq!(
        *log.lock().unwrap(),
        ["encode +1", "encode *10", "decode *10", "decode +1"]
    );
    // A failing pre-encoder names itself; nothing else is produced.
    let s = spec::<Point>();
    let err = enc
        .decode(&s, &framed(br#"{"x":61,"y":2}"#), "k/1")
        .unwrap_err();
    match &err {
        CheckpointError::Decode {
            stage: Stage::PreEncoder { index, name },
            key,
            ..
        } => {
            assert_eq!((*index, name.as_str(), key.as_str()), (1, "mul-x", "k/1"));
        }
        other => panic!("unexpected {other}"),
    }
    // NaN has no JSON form: the pre-encoder path refuses it at encode time.
    let f = spec::<Vec<f64>>();
    let err = enc.encode(&f, &value(vec![f64::NAN]), "k/2").unwrap_err();
    assert!(matches!(err, CheckpointError::Encode { .. }), "{err}");
}

#[test]
fn damaged_entries_are_errors_naming_key_and_stage() {
    let p = Point { x: 1, y: 2 };
    let s = spec::<Point>();
    let enc = Encoder::new();
    let good = enc.encode(&s, &value(p), "point/1").unwrap();
    let stage_of = |bytes: &[u8]| match enc.decode(&s, bytes, "point/1").unwrap_err() {
        CheckpointError::Decode { key, stage, .. } => {
            assert_eq!(key, "point/1");
            stage
        }
        other => panic!("unexpected {other}"),
    };
    assert_eq!(stage_of(b""), Stage::Compressor("zstd"));
    assert_eq!(stage_of(b"garbage, not zstd"), Stage::Compressor("zstd"));
    assert_eq!(stage_of(&good[..good.len() - 3]), Stage::Compressor("zstd"));
    // A valid frame of something else: the serializer rejects it.
    let other = zstd::bulk::compress(b"[1,2,3]", 3).unwrap();
    assert_eq!(stage_of(&other), Stage::Serializer("json"));
    let trailing = zstd::bulk::compress(br#"{"x":1,"y":2} junk"#, 3).unwrap();
    assert_eq!(stage_of(&trailing), Stage::Serializer("json"));
    // npy asked to read JSON.
    let npy = Encoder::new().serializer(Serializer::Npy);
    let a = spec::<Array2<f64>>();
    assert!(matches!(
        npy.decode(&a, &good, "a/1").unwrap_err(),
        CheckpointError::Decode {
            stage: Stage::Serializer("npy"),
            ..
        }
    ));
    // A truncated npy frame: the compressor stage; with encryption, authentication.
    let arr = value(Array2::from_shape_fn((50, 40), |(i, j)| (i * j) as f64));
    let full = npy.encode(&a, &arr, "a/1").unwrap();
    assert!(matches!(
        npy.decode(&a, &full[..full.len() / 2], "a/1").unwrap_err(),
        CheckpointError::Decode {
            stage: Stage::Compressor("zstd"),
            ..
        }
    ));
    let sealed = npy.clone().encrypter(Encrypter::from_key([3; 32]));
    let e = sealed.encode(&a, &arr, "a/1").unwrap();
    assert!(sealed.decode(&a, &e, "a/1").is_ok());
    assert!(matches!(
        sealed.decode(&a, &e[..e.len() - 1], "a/1").unwrap_err(),
        CheckpointError::Authentication { .. }
    ));
    // npy of a non-array is an encode error naming the stage.
    assert!(matches!(
        npy.encode(&s, &value(Point::default()), "p/1").unwrap_err(),
        CheckpointError::Encode {
            stage: Stage::Serializer("npy"),
            ..
        }
    ));
}

#[test]
fn encryption_authenticates_key_content_and_location() {
    let s = spec::<String>();
    let enc = Encoder::new().encrypter(Encrypter::from_key([1; 32]));
    let v = value(String::from("secret"));
    let a = enc.encode(&s, &v, "k/a").unwrap();
    let b = enc.encode(&s, &v, "k/a").unwrap();
    assert_ne!(a, b, "each entry gets a fresh nonce");
    assert!(!a.windows(6).any(|w| w == b"secret"));
    let auth = |r: Result<Value, CheckpointError>| {
        matches!(r, Err(CheckpointError::Authentication { .. }))
    };
    // Another key, a flipped byte, a truncated entry, an entry moved to another key.
    let wrong = Encoder::new().encrypter(Encrypter::from_key([2; 32]));
    assert!(auth(wrong.decode(&s, &a, "k/a")));
    for i in [0, 12, a.len() - 1] {
        let mut t = a.clone();
        t[i] ^= 1;
        assert!(auth(enc.decode(&s, &t, "k/a")), "flipped byte {i}");
    }
    assert!(auth(enc.decode(&s, &a[..20], "k/a")));
    assert!(auth(enc.decode(&s, &a, "k/b")));
    assert_eq!(
        enc.decode(&s, &a, "k/a")
            .unwrap()
            .downcast_ref::<String>()
            .unwrap(),
        "secret"
    );
}

#[test]
fn passphrases_reopen_a_store_with_its_recorded_salt() {
    let store = MemoryStore::new();
    let quick = KdfParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let e1 = Encrypter::from_passphrase(&store, "correct horse", quick).unwrap();
    let record = store.get("_brisk/encryption.json").unwrap().unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(rec["kdf"], "argon2id");
    assert_eq!(rec["m_cost"], 64);
    let s = spec::<String>();
    let bytes = Encoder::new()
        .encrypter(e1)
        .encode(&s, &value(String::from("v")), "k/1")
        .unwrap();
    // Later, other default parameters: the recorded ones win, so the key is the same.
    let e2 = Encrypter::from_passphrase(&store, "correct horse", KdfParams::default()).unwrap();
    let back = Encoder::new()
        .encrypter(e2)
        .decode(&s, &bytes, "k/1")
        .unwrap();
    assert_eq!(back.downcast_ref::<String>().unwrap(), "v");
    let e3 = Encrypter::from_passphrase(&store, "wrong horse", quick).unwrap();
    assert!(matches!(
        Encoder::new().encrypter(e3).decode(&s, &bytes, "k/1"),
        Err(CheckpointError::Authentication { .. })
    ));
    // Another store gets another salt.
    let other = MemoryStore::new();
    Encrypter::from_passphrase(&other, "correct horse", quick).unwrap();
    assert_ne!(
        other.get("_brisk/encryption.json").unwrap().unwrap(),
        record
    );
}

/// An `.npy` header for `f64` data of `shape` (a tuple literal), padded as NumPy pads it.
fn npy_header(shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(dict.len()).unwrap().to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[test]
fn hostile_sizes_in_entries_are_errors_never_allocations() {
    let s = spec_of_array();
    // A 300-byte `.npy` entry declaring 8e14 bytes of data, raw and in a zstd frame.
    let mut npy = npy_header("(99999999999999,)");
    npy.extend_from_slice(&[0u8; 200]);
    let raw = Encoder::new().no_compressor().serializer(Serializer::Npy);
    let err = raw.decode(&s, &framed(&npy), "k/npy").unwrap_err();
    assert!(
        matches!(err, CheckpointError::Decode { .. }) && err.to_string().contains("declares"),
        "{err}"
    );
    let zstd = Encoder::new().serializer(Serializer::Npy);
    let frame = zstd::bulk::compress(&npy, 3).unwrap();
    let err = zstd.decode(&s, &frame, "k/npy").unwrap_err();
    assert!(err.to_string().contains("declares"), "{err}");
    // A shape whose byte count overflows 64 bits.
    let mut npy = npy_header("(4294967296, 4294967296, 16)");
    npy.extend_from_slice(&[0u8; 16]);
    let err = raw.decode(&s, &framed(&npy), "k/npy").unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");

    // A 16-byte zstd frame declaring 16 GiB of content: one RLE block of 128 KiB.
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.push(0xE0); // 8-byte content size, single segment
    frame.extend_from_slice(&(16u64 << 30).to_le_bytes());
    let block: u32 = (131_072 << 3) | (1 << 1) | 1; // last, RLE, 128 KiB
    frame.extend_from_slice(&block.to_le_bytes()[..3]);
    frame.push(0);
    for (enc, spec) in [
        (Encoder::new(), spec::<Vec<f64>>()),
        (Encoder::new().serializer(Serializer::Npy), s),
    ] {
        let err = enc.decode(&spec, &frame, "k/zstd").unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::Decode {
                    stage: Stage::Compressor("zstd"),
                    ..
                }
            ),
            "{err}"
        );
    }
}

fn spec_of_array() -> SaveSpec {
    let d = TaskSpec::new("a")
        .pure()
        .call(|| ArrayD::<f64>::zeros(IxDyn(&[2])), ())
        .checkpointed();
    let g = brisk_graph::Graph::new([&d]);
    *g.node(g.outputs()[0]).save_spec().unwrap()
}

#[test]
fn zstd_entries_carry_their_checksum() {
    let enc = Encoder::new();
    let s = spec::<Vec<f64>>();
    let v: Vec<f64> = (0..512).map(|i| f64::from(i) * 0.5).collect();
    let bytes = enc.encode(&s, &value(v.clone()), "k/c").unwrap();
    // Frame header descriptor: bit 2 is the content checksum flag.
    assert_eq!(bytes[4] & 0b100, 0b100, "no checksum flag");
    let mut wrong = 0;
    for at in 6..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        if let Ok(back) = enc.decode(&s, &bad, "k/c")
            && back.downcast_ref::<Vec<f64>>() != Some(&v)
        {
            wrong += 1;
        }
    }
    assert_eq!(
        wrong, 0,
        "{wrong} corrupted entries decoded to a wrong value"
    );
}

#[test]
fn uncompressed_unencrypted_entries_carry_a_crc32_and_detect_every_flip() {
    let enc = Encoder::new().no_compressor();
    let s = spec::<Vec<f64>>();
    let v: Vec<f64> = (0..64).map(|i| f64::from(i) * 1.25).collect();
    let bytes = enc.encode(&s, &value(v.clone()), "k/r").unwrap();
    assert_eq!(&bytes[..6], b"BRISK\x01");
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            let err = enc.decode(&s, &bad, "k/r").unwrap_err();
            assert!(
                matches!(
                    err,
                    CheckpointError::Decode {
                        stage: Stage::Integrity,
                        ..
                    }
                ),
                "byte {at} ^ {flip:#x}: {err}"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            enc.decode(&s, &bytes[..len], "k/r").is_err(),
            "cut at {len}"
        );
    }
}
