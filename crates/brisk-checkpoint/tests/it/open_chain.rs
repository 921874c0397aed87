//! The encoder chain is open: user serializers, compressors and encrypters, with the
//! built-ins as implementations of the same traits.

use std::sync::Arc;

use brisk_checkpoint::{
    CheckpointError, Compress, Compressor, Encoder, Encrypt, Encrypter, SerdeFormat, Serializer,
    Stage, erased_serde, serde_json,
};
use brisk_graph::{BoxError, SaveSpec, TaskSpec, Value};

fn spec() -> SaveSpec {
    let d = TaskSpec::new("v")
        .pure()
        .call(|| vec![0.0f64], ())
        .checkpointed();
    let g = brisk_graph::Graph::new([&d]);
    *g.node(g.outputs()[0]).save_spec().unwrap()
}

fn value() -> Value {
    Arc::new(vec![1.5f64, -2.25, 1e-300])
}

fn loads(enc: &Encoder, bytes: &[u8]) -> Vec<f64> {
    enc.decode(&spec(), bytes, "k/1")
        .unwrap()
        .downcast_ref::<Vec<f64>>()
        .unwrap()
        .clone()
}

#[test]
fn the_builtins_through_the_traits_read_and_write_the_same_entries() {
    let builtin = Encoder::new().encrypter(Encrypter::from_key([5; 32]));
    let through_traits = Encoder::new()
        .custom_serializer(Serializer::Json)
        .custom_compressor(Compressor::Zstd { level: 3 })
        .custom_encrypter(Encrypter::from_key([5; 32]));
    let a = builtin.encode(&spec(), &value(), "k/1").unwrap();
    let b = through_traits.encode(&spec(), &value(), "k/1").unwrap();
    assert_eq!(loads(&through_traits, &a), [1.5, -2.25, 1e-300]);
    assert_eq!(loads(&builtin, &b), [1.5, -2.25, 1e-300]);
}

/// Pretty-printed JSON.
#[derive(Debug)]
struct PrettyJson;

impl SerdeFormat for PrettyJson {
    fn name(&self) -> &str {
        "pretty-json"
    }
    fn serialize(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec_pretty(value)?)
    }
    fn deserialize(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<Value, erased_serde::Error>,
    ) -> Result<Value, BoxError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let v = visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
        de.end()?;
        Ok(v)
    }
}

/// Bytes reversed: no integrity check of its own.
#[derive(Debug)]
struct Reverse;

impl Compress for Reverse {
    fn name(&self) -> &str {
        "reverse"
    }
    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(data.iter().rev().copied().collect())
    }
    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(data.iter().rev().copied().collect())
    }
}

/// XOR with a byte: not authenticated.
#[derive(Debug)]
struct Xor(u8);

impl Encrypt for Xor {
    fn name(&self) -> &str {
        "xor"
    }
    fn encrypt(&self, plaintext: &[u8], _key: &str) -> Result<Vec<u8>, BoxError> {
        Ok(plaintext.iter().map(|b| b ^ self.0).collect())
    }
    fn decrypt(&self, data: &[u8], _key: &str) -> Result<Vec<u8>, BoxError> {
        Ok(data.iter().map(|b| b ^ self.0).collect())
    }
}

#[test]
fn user_stages_round_trip_and_entries_without_their_own_check_carry_a_crc32() {
    let enc = Encoder::new()
        .custom_serializer(PrettyJson)
        .custom_compressor(Reverse)
        .custom_encrypter(Xor(0x5a));
    let bytes = enc.encode(&spec(), &value(), "k/1").unwrap();
    assert_eq!(loads(&enc, &bytes), [1.5, -2.25, 1e-300]);
    // Neither stage detects corruption: Brisk's CRC-32 header is there, and catches flips.
    assert_eq!(&bytes[..6], b"BRISK\x01");
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x04;
        assert!(
            enc.decode(&spec(), &bad, "k/1").is_err(),
            "flip at {at} decoded"
        );
    }
    // With zstd (which detects corruption) after the user serializer: no header needed.
    let zstd = Encoder::new().custom_serializer(PrettyJson);
    let bytes = zstd.encode(&spec(), &value(), "k/1").unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(loads(&zstd, &bytes), [1.5, -2.25, 1e-300]);
}

#[test]
fn user_stage_errors_name_the_stage_and_lossy_saves_are_refused() {
    let enc = Encoder::new().custom_serializer(PrettyJson);
    let err = enc
        .decode(
            &spec(),
            &Compressor::Zstd { level: 1 }.compress(b"[1,").unwrap(),
            "k/1",
        )
        .unwrap_err();
    match err {
        CheckpointError::Decode {
            stage: Stage::Custom { stage, name },
            ..
        } => assert_eq!((stage, name.as_str()), ("serializer", "pretty-json")),
        other => panic!("unexpected {other}"),
    }
    let nan: Value = Arc::new(vec![f64::NAN]);
    assert!(
        enc.encode_exact(&spec(), &nan, "k/2").is_err(),
        "NaN through JSON stored"
    );
}
