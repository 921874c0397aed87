//! The encoder chain: pre-encoders → serializer → compressor → encrypter on encode, exactly
//! reversed on decode.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use brisk_graph::{BoxError, SaveSpec, Value};

use crate::error::{CheckpointError, Result, Stage};
use crate::npy;
use brisk_store::Store;

/// A value→value transformation applied before the serializer (and undone after it), on
/// the serde data model as `serde_json::Value`. `decode` must invert `encode`.
///
/// Note: JSON values have no NaN or infinities, so results holding them cannot go through
/// pre-encoders (the encode fails, naming the stage; nothing is stored).
pub trait PreEncoder: Send + Sync + fmt::Debug {
    /// A short name, shown in errors.
    fn name(&self) -> &str;
    /// Transforms a value on its way to the serializer.
    ///
    /// # Errors
    /// When the value is not one this pre-encoder handles.
    fn encode(&self, value: serde_json::Value) -> Result<serde_json::Value, BoxError>;
    /// Inverts [`encode`](PreEncoder::encode).
    ///
    /// # Errors
    /// When the value is not one `encode` produces.
    fn decode(&self, value: serde_json::Value) -> Result<serde_json::Value, BoxError>;
}

/// A serializer of your own (seed 002's serializer protocol): values ↔ bytes through serde.
/// [`Serializer`]'s JSON, YAML and MessagePack implement it too.
///
/// ```
/// use brisk_checkpoint::{SerdeFormat, erased_serde, serde_json};
/// use brisk_graph::{BoxError, Value};
///
/// /// Pretty-printed JSON.
/// #[derive(Debug)]
/// struct PrettyJson;
///
/// impl SerdeFormat for PrettyJson {
///     fn name(&self) -> &str {
///         "pretty-json"
///     }
///     fn serialize(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, BoxError> {
///         Ok(serde_json::to_vec_pretty(value)?)
///     }
///     fn deserialize(
///         &self,
///         bytes: &[u8],
///         visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<Value, erased_serde::Error>,
///     ) -> Result<Value, BoxError> {
///         let mut de = serde_json::Deserializer::from_slice(bytes);
///         let v = visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
///         de.end()?;
///         Ok(v)
///     }
/// }
/// let enc = brisk_checkpoint::Encoder::new().custom_serializer(PrettyJson);
/// # let _ = enc;
/// ```
pub trait SerdeFormat: Send + Sync + fmt::Debug {
    /// A short name, shown in errors.
    fn name(&self) -> &str;
    /// The bytes of `value`.
    ///
    /// # Errors
    /// When the value cannot be represented.
    fn serialize(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, BoxError>;
    /// Reads `bytes`: build your format's deserializer over them, hand it to `visit` (which
    /// builds the value), and check that nothing follows the value.
    ///
    /// # Errors
    /// When the bytes are not a value of the expected type in this format.
    fn deserialize(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<Value, erased_serde::Error>,
    ) -> Result<Value, BoxError>;
}

/// A compressor of your own (seed 002's compressor protocol). [`Compressor`] implements it.
pub trait Compress: Send + Sync + fmt::Debug {
    /// A short name, shown in errors.
    fn name(&self) -> &str;
    /// Compresses `data`.
    ///
    /// # Errors
    /// When compression fails.
    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError>;
    /// Inverts [`compress`](Compress::compress).
    ///
    /// # Errors
    /// When `data` is not what `compress` produces (or is corrupted).
    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError>;
    /// Whether `decompress` detects every corruption (a checksum over the content). When it
    /// does not, and no authenticating encrypter follows, entries also carry Brisk's CRC-32.
    fn detects_corruption(&self) -> bool {
        false
    }
}

/// An encrypter of your own (seed 002's encrypter protocol). [`Encrypter`] implements it.
pub trait Encrypt: Send + Sync + fmt::Debug {
    /// A short name, shown in errors.
    fn name(&self) -> &str;
    /// Encrypts `plaintext` for the entry stored under `key` (bind the key, so that an
    /// entry copied under another key fails to decrypt).
    ///
    /// # Errors
    /// When encryption fails.
    fn encrypt(&self, plaintext: &[u8], key: &str) -> Result<Vec<u8>, BoxError>;
    /// Inverts [`encrypt`](Encrypt::encrypt); an error is reported as an authentication
    /// failure of the entry.
    ///
    /// # Errors
    /// Wrong key, a modified entry, an entry stored under another key.
    fn decrypt(&self, data: &[u8], key: &str) -> Result<Vec<u8>, BoxError>;
    /// Whether `decrypt` detects every modification (an AEAD tag). When it does not, and the
    /// compressor does not either, entries also carry Brisk's CRC-32.
    fn authenticates(&self) -> bool {
        false
    }
}

impl SerdeFormat for Serializer {
    fn name(&self) -> &str {
        Serializer::name(*self)
    }
    fn serialize(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, BoxError> {
        write_serde(*self, value)
    }
    fn deserialize(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<Value, erased_serde::Error>,
    ) -> Result<Value, BoxError> {
        match self {
            Self::Json => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let v = visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
                de.end()?;
                Ok(v)
            }
            Self::Yaml => {
                let de = yaml_serde::Deserializer::from_slice(bytes);
                Ok(visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(de))?)
            }
            Self::MessagePack => {
                let mut rest: &[u8] = bytes;
                let v = {
                    let mut de = rmp_serde::Deserializer::new(&mut rest);
                    visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?
                };
                if !rest.is_empty() {
                    return Err("trailing bytes after the value".into());
                }
                Ok(v)
            }
            Self::Npy => Err("npy is not a serde format".into()),
        }
    }
}

impl Compress for Compressor {
    fn name(&self) -> &str {
        match self {
            Self::Zstd { .. } => "zstd",
        }
    }
    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError> {
        let Self::Zstd { level } = *self;
        Ok(zstd_compress(level, data, 0)?)
    }
    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, BoxError> {
        zstd_decompress(data)
    }
    fn detects_corruption(&self) -> bool {
        true
    }
}

impl Encrypt for Encrypter {
    fn name(&self) -> &str {
        "aes-256-gcm"
    }
    fn encrypt(&self, plaintext: &[u8], key: &str) -> Result<Vec<u8>, BoxError> {
        let mut buf = Vec::with_capacity(12 + plaintext.len() + 16);
        buf.extend_from_slice(&[0u8; 12]);
        buf.extend_from_slice(plaintext);
        self.seal(&mut buf, key)?;
        Ok(buf)
    }
    fn decrypt(&self, data: &[u8], key: &str) -> Result<Vec<u8>, BoxError> {
        Ok(self.open(data, key)?)
    }
    fn authenticates(&self) -> bool {
        true
    }
}

/// How values become bytes. None of them can execute code when loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Serializer {
    /// JSON (`serde_json`): human-readable, the default. `{"x":1,"y":2}`.
    #[default]
    Json,
    /// YAML 1.2 (`yaml_serde`). Note: PyYAML follows YAML 1.1 and reads floats written in
    /// exponent form without a dot (`1e300`) as strings; `ruamel.yaml` reads them as floats.
    Yaml,
    /// MessagePack (`rmp-serde`, structs as maps).
    MessagePack,
    /// NumPy's `.npy` format for `ndarray` arrays (`Array1<f64>`, `ArrayD<u8>`, …; elements
    /// `bool`, `i8`…`i64`, `u8`…`u64`, `f32`, `f64`), readable by `numpy.load`.
    Npy,
}

impl Serializer {
    fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::MessagePack => "msgpack",
            Self::Npy => "npy",
        }
    }
}

/// How serialized bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compressor {
    /// One zstd frame that declares its content size (Python's `zstandard.decompress` reads
    /// it). Levels 1 (fast) to 22 (small); 3 by default.
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl Default for Compressor {
    fn default() -> Self {
        Self::Zstd { level: 3 }
    }
}

/// The key record of a passphrase-protected store (Argon2id parameters and salt).
const KDF_KEY: &str = "_brisk/encryption.json";

/// AES-256-GCM encryption of each entry with a fresh random 96-bit nonce, stored as
/// `nonce ‖ ciphertext ‖ tag`, with the entry's storage key as associated data: an entry
/// copied under another key, a wrong key and a flipped byte all fail to decrypt.
#[derive(Clone)]
pub struct Encrypter {
    cipher: Arc<Aes256Gcm>,
}

impl fmt::Debug for Encrypter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Encrypter(aes-256-gcm, key hidden)")
    }
}

/// Argon2id parameters for [`Encrypter::from_passphrase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        Self {
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl Encrypter {
    /// An encrypter with a raw 256-bit key.
    #[must_use]
    pub fn from_key(key: [u8; 32]) -> Self {
        Self {
            cipher: Arc::new(Aes256Gcm::new(&key.into())),
        }
    }

    /// An encrypter whose key is derived from `passphrase` with Argon2id. The salt and
    /// parameters are recorded in `store` (under `_brisk/encryption.json`) the first time,
    /// with `params`; later calls read them from there (ignoring `params`), so the same
    /// passphrase opens the store again.
    ///
    /// # Errors
    /// [`CheckpointError::Encryption`] when the record is unreadable or the derivation fails;
    /// store errors.
    pub fn from_passphrase(store: &dyn Store, passphrase: &str, params: KdfParams) -> Result<Self> {
        let bad = |m: String| CheckpointError::Encryption(m);
        let (salt, params) = match store.get(KDF_KEY)? {
            Some(bytes) => {
                let rec: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| bad(format!("unreadable {KDF_KEY}: {e}")))?;
                let num = |k: &str| -> Result<u32> {
                    rec.get(k)
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad(format!("{KDF_KEY} has no valid `{k}`")))
                };
                if rec.get("kdf").and_then(serde_json::Value::as_str) != Some("argon2id") {
                    return Err(bad(format!("{KDF_KEY} names an unknown key derivation")));
                }
                let salt = rec
                    .get("salt")
                    .and_then(serde_json::Value::as_str)
                    .and_then(from_hex)
                    .ok_or_else(|| bad(format!("{KDF_KEY} has no valid `salt`")))?;
                let p = KdfParams {
                    m_cost: num("m_cost")?,
                    t_cost: num("t_cost")?,
                    p_cost: num("p_cost")?,
                };
                (salt, p)
            }
            None => {
                let mut salt = vec![0u8; 16];
                getrandom::fill(&mut salt).map_err(|e| bad(format!("no randomness: {e}")))?;
                let rec = serde_json::json!({
                    "kdf": "argon2id", "version": 19, "salt": to_hex(&salt),
                    "m_cost": params.m_cost, "t_cost": params.t_cost, "p_cost": params.p_cost,
                });
                store.put(KDF_KEY, rec.to_string().as_bytes())?;
                (salt, params)
            }
        };
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
                .map_err(|e| bad(format!("Argon2id parameters: {e}")))?,
        );
        let mut key = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
            .map_err(|e| bad(format!("Argon2id: {e}")))?;
        Ok(Self::from_key(key))
    }

    /// Encrypts `buf[12..]` in place: `buf[..12]` becomes the nonce and the tag is appended.
    fn seal(&self, buf: &mut Vec<u8>, key: &str) -> Result<(), BoxError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let (head, body) = buf.split_at_mut(12);
        head.copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce.into(), key.as_bytes(), body.into())
            .map_err(BoxError::from)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// The plaintext of `nonce ‖ ciphertext ‖ tag`.
    fn open(&self, data: &[u8], key: &str) -> Result<Vec<u8>> {
        let auth = || CheckpointError::Authentication {
            key: crate::error::shown(key),
        };
        if data.len() < 12 + 16 {
            return Err(auth());
        }
        let (nonce, rest) = data.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| auth())?;
        let tag: [u8; 16] = tag.try_into().map_err(|_| auth())?;
        let mut plain = ct.to_vec();
        self.cipher
            .decrypt_inout_detached(
                &nonce.into(),
                key.as_bytes(),
                plain.as_mut_slice().into(),
                &tag.into(),
            )
            .map_err(|_| auth())?;
        Ok(plain)
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The encoder chain of a checkpoint: `pre-encoders → serializer → compressor → encrypter` on
/// encode, exactly reversed on decode. Any stage can be off. The default is JSON + zstd
/// level 3, no pre-encoders, no encryption.
///
/// Every entry detects corruption: zstd frames carry their content checksum, AES-GCM its tag,
/// and an entry with neither is `BRISK\x01` + the CRC-32 (IEEE, little-endian) of the
/// serialized bytes + those bytes. A corrupted entry is a [`CheckpointError::Decode`] naming
/// the key (or a recompute under `CorruptPolicy::RecomputeOnCorrupt`), never a value.
///
/// ```
/// use brisk_checkpoint::{Compressor, Encoder, Serializer};
///
/// let readable = Encoder::new().serializer(Serializer::Json).no_compressor();
/// let arrays = Encoder::new().serializer(Serializer::Npy).compressor(Compressor::Zstd { level: 1 });
/// # let _ = (readable, arrays);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Encoder {
    pre: Vec<Arc<dyn PreEncoder>>,
    serializer: Option<Serializer>,
    compressor: Option<Compressor>,
    encrypter: Option<Encrypter>,
    /// A serializer of the user's, used instead of `serializer` when set.
    custom_serializer: Option<Arc<dyn SerdeFormat>>,
    /// A compressor of the user's, used instead of `compressor` when set.
    custom_compressor: Option<Arc<dyn Compress>>,
    /// An encrypter of the user's, used instead of `encrypter` when set.
    custom_encrypter: Option<Arc<dyn Encrypt>>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            pre: Vec::new(),
            serializer: Some(Serializer::Json),
            compressor: Some(Compressor::default()),
            encrypter: None,
            custom_serializer: None,
            custom_compressor: None,
            custom_encrypter: None,
        }
    }
}

impl Encoder {
    /// JSON + zstd level 3.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a pre-encoder (applied after those already added when encoding).
    pub fn pre_encoder(mut self, p: impl PreEncoder + 'static) -> Self {
        self.pre.push(Arc::new(p));
        self
    }
    /// Sets the serializer.
    pub fn serializer(mut self, s: Serializer) -> Self {
        self.serializer = Some(s);
        self.custom_serializer = None;
        self
    }
    /// No serializer: the result must be a `Vec<u8>`, stored as is.
    pub fn no_serializer(mut self) -> Self {
        self.serializer = None;
        self.custom_serializer = None;
        self
    }
    /// A serializer of your own (see [`SerdeFormat`]).
    pub fn custom_serializer(mut self, s: impl SerdeFormat + 'static) -> Self {
        self.serializer = None;
        self.custom_serializer = Some(Arc::new(s));
        self
    }
    /// Sets the compressor.
    pub fn compressor(mut self, c: Compressor) -> Self {
        self.compressor = Some(c);
        self.custom_compressor = None;
        self
    }
    /// No compression.
    pub fn no_compressor(mut self) -> Self {
        self.compressor = None;
        self.custom_compressor = None;
        self
    }
    /// A compressor of your own (see [`Compress`]).
    pub fn custom_compressor(mut self, c: impl Compress + 'static) -> Self {
        self.compressor = None;
        self.custom_compressor = Some(Arc::new(c));
        self
    }
    /// Encrypts entries.
    pub fn encrypter(mut self, e: Encrypter) -> Self {
        self.encrypter = Some(e);
        self.custom_encrypter = None;
        self
    }
    /// An encrypter of your own (see [`Encrypt`]).
    pub fn custom_encrypter(mut self, e: impl Encrypt + 'static) -> Self {
        self.encrypter = None;
        self.custom_encrypter = Some(Arc::new(e));
        self
    }

    /// The serializer's stage, for errors.
    fn ser_stage(&self) -> Stage {
        match &self.custom_serializer {
            Some(f) => Stage::Custom {
                stage: "serializer",
                name: f.name().to_owned(),
            },
            None => Stage::Serializer(self.serializer.map_or("raw", Serializer::name)),
        }
    }

    /// Whether entries carry Brisk's CRC-32: when neither the compressor detects corruption
    /// nor the encrypter authenticates.
    fn needs_digest(&self) -> bool {
        let detects = self.compressor.is_some()
            || self
                .custom_compressor
                .as_ref()
                .is_some_and(|c| c.detects_corruption());
        let authenticates = self.encrypter.is_some()
            || self
                .custom_encrypter
                .as_ref()
                .is_some_and(|e| e.authenticates());
        !detects && !authenticates
    }

    /// Encodes `value` (of the type `spec` describes) for storage under `key`.
    ///
    /// # Errors
    /// [`CheckpointError::Encode`] naming the key and the failing stage.
    pub fn encode(&self, spec: &SaveSpec, value: &Value, key: &str) -> Result<Vec<u8>> {
        let fail = |stage: Stage, source: BoxError| CheckpointError::Encode {
            key: crate::error::shown(key),
            stage,
            source,
        };
        let ser_stage = self.ser_stage();
        let mut bytes = if self.pre.is_empty() {
            self.serialize(spec, value)
                .map_err(|m| fail(ser_stage.clone(), m))?
        } else {
            let typed = spec.serializable(value).ok_or_else(|| {
                fail(
                    ser_stage.clone(),
                    format!("the value is not a {}", spec.type_name()).into(),
                )
            })?;
            let mut v = serde_json::to_value(typed).map_err(|e| {
                fail(
                    Stage::PreEncoder {
                        index: 0,
                        name: self.pre[0].name().to_owned(),
                    },
                    format!("the value has no serde_json form: {e}").into(),
                )
            })?;
            for (index, p) in self.pre.iter().enumerate() {
                let stage = Stage::PreEncoder {
                    index,
                    name: p.name().to_owned(),
                };
                v = p.encode(v).map_err(|e| fail(stage, e))?;
            }
            self.serialize_json_value(&v)
                .map_err(|m| fail(ser_stage.clone(), m))?
        };
        // With encryption, compress straight into the buffer that is then encrypted in place
        // (12 bytes for the nonce in front): no copy of the payload between the stages.
        let reserve = if self.encrypter.is_some() { 12 } else { 0 };
        if let Some(c) = &self.custom_compressor {
            bytes = c.compress(&bytes).map_err(|e| {
                let stage = Stage::Custom {
                    stage: "compressor",
                    name: c.name().to_owned(),
                };
                fail(stage, e)
            })?;
            if reserve > 0 {
                bytes.splice(0..0, [0u8; 12]);
            }
        } else if let Some(Compressor::Zstd { level }) = self.compressor {
            bytes = zstd_compress(level, &bytes, reserve)
                .map_err(|e| fail(Stage::Compressor("zstd"), e.into()))?;
        } else if reserve > 0 {
            bytes.splice(0..0, [0u8; 12]);
        }
        if let Some(enc) = &self.encrypter {
            bytes.reserve_exact(16);
            enc.seal(&mut bytes, key)
                .map_err(|m| fail(Stage::Encrypter, m))?;
        } else if let Some(e) = &self.custom_encrypter {
            bytes = e.encrypt(&bytes, key).map_err(|err| {
                let stage = Stage::Custom {
                    stage: "encrypter",
                    name: e.name().to_owned(),
                };
                fail(stage, err)
            })?;
        }
        if self.needs_digest() {
            // Neither zstd's checksum nor AES-GCM's tag: a CRC-32 in a small header.
            let crc = crc32fast::hash(&bytes);
            bytes.splice(0..0, DIGEST_MAGIC.iter().copied().chain(crc.to_le_bytes()));
        }
        Ok(bytes)
    }

    /// [`Encoder::encode`], then the bytes decoded again and compared with `value` by their
    /// canonical tokens (floats by bit pattern): a value that would not load back identical
    /// is refused, and nothing should be stored. This is what a [`Storage`](crate::Storage)
    /// save does. `.npy` and raw bytes without pre-encoders are exact by construction and are
    /// not decoded again.
    ///
    /// # Errors
    /// [`CheckpointError::Encode`] naming the key, the serializer and what cannot be
    /// represented (e.g. "NaN has no JSON form").
    pub fn encode_exact(&self, spec: &SaveSpec, value: &Value, key: &str) -> Result<Vec<u8>> {
        let bytes = self.encode(spec, value, key)?;
        if self.pre.is_empty()
            && self.custom_serializer.is_none()
            && matches!(self.serializer, None | Some(Serializer::Npy))
        {
            return Ok(bytes);
        }
        let stage = self.ser_stage();
        let refuse = |why: String| CheckpointError::Encode {
            key: crate::error::shown(key),
            stage: stage.clone(),
            source: format!(
                "the value would not load back identically through the {stage}: {why}; \
                 nothing was stored. {}",
                self.lossy_hint()
            )
            .into(),
        };
        let back = self
            .decode(spec, &bytes, key)
            .map_err(|e| refuse(format!("its stored form does not decode ({e})")))?;
        let token = |v: &Value| -> Result<brisk_graph::Token> {
            let s = spec
                .serializable(v)
                .ok_or_else(|| refuse(format!("the value is not a {}", spec.type_name())))?;
            brisk_graph::serde_token(s).map_err(|e| refuse(e.to_string()))
        };
        if token(value)? != token(&back)? {
            return Err(refuse("it loads back as a different value".into()));
        }
        Ok(bytes)
    }

    /// What a serializer cannot represent, for the error of a refused save.
    fn lossy_hint(&self) -> String {
        let pre = if self.pre.is_empty() {
            ""
        } else {
            " Or a pre-encoder's decode does not undo its encode."
        };
        let ser = match self.serializer {
            Some(Serializer::Json) => {
                "NaN and ±inf have no JSON form, and `Some(None)`/`Some(())` load as `None`: \
                 use MessagePack for non-finite floats, or a type without nested options."
            }
            Some(Serializer::Yaml) => {
                "YAML loads `Some(None)` and `Some(())` as `None`: use a type without nested \
                 options."
            }
            Some(Serializer::MessagePack) => {
                "MessagePack loads `Some(None)` and `Some(())` as `None`: use a type without \
                 nested options."
            }
            _ => "",
        };
        format!("{ser}{pre}")
    }

    /// Decodes an entry stored under `key` into a value of the type `spec` describes.
    ///
    /// # Errors
    /// [`CheckpointError::Authentication`] when decryption fails; [`CheckpointError::Decode`]
    /// naming the key and the stage that rejected the entry. Never a wrong value.
    pub fn decode(&self, spec: &SaveSpec, bytes: &[u8], key: &str) -> Result<Value> {
        let fail = |stage: Stage, source: BoxError| CheckpointError::Decode {
            key: crate::error::shown(key),
            stage,
            source,
        };
        let ser_stage = self.ser_stage();
        if matches!(self.compressor, Some(Compressor::Zstd { .. }))
            && self.custom_serializer.is_none()
            && self.serializer == Some(Serializer::Npy)
            && self.pre.is_empty()
        {
            // Stream the frame into the array: no decompressed copy of the whole entry.
            let data = self.open_envelope(bytes, key)?;
            return npy::decode_zstd(spec, &data).map_err(|(compressor, m)| {
                fail(
                    if compressor {
                        Stage::Compressor("zstd")
                    } else {
                        ser_stage
                    },
                    m,
                )
            });
        }
        let data = self.open_layers(bytes, key)?;
        let data: &[u8] = &data;
        if self.pre.is_empty() {
            return self.deserialize(spec, data, &ser_stage, key);
        }
        let mut v = self
            .deserialize_json_value(data)
            .map_err(|m| fail(ser_stage, m))?;
        v = self.undo_pre_encoders(v, key)?;
        let mut de = <dyn erased_serde::Deserializer<'_>>::erase(v);
        spec.deserialize(&mut de)
            .map_err(|e| fail(Stage::Value, e.into()))
    }

    /// The serialized bytes inside an entry: its integrity header checked (entries with
    /// neither compressor nor encrypter), decrypted, decompressed.
    fn open_layers<'a>(&self, bytes: &'a [u8], key: &str) -> Result<Cow<'a, [u8]>> {
        let data = self.open_envelope(bytes, key)?;
        if let Some(c) = &self.custom_compressor {
            let out = c.decompress(&data).map_err(|e| CheckpointError::Decode {
                key: crate::error::shown(key),
                stage: Stage::Custom {
                    stage: "compressor",
                    name: c.name().to_owned(),
                },
                source: e,
            })?;
            return Ok(Cow::Owned(out));
        }
        if let Some(Compressor::Zstd { .. }) = self.compressor {
            let out = zstd_decompress(&data).map_err(|m| CheckpointError::Decode {
                key: crate::error::shown(key),
                stage: Stage::Compressor("zstd"),
                source: m,
            })?;
            return Ok(Cow::Owned(out));
        }
        Ok(data)
    }

    /// An entry with its integrity header checked and its encryption opened (still
    /// compressed).
    fn open_envelope<'a>(&self, bytes: &'a [u8], key: &str) -> Result<Cow<'a, [u8]>> {
        let mut data = Cow::Borrowed(bytes);
        if self.needs_digest() {
            data = check_digest(bytes)
                .map(Cow::Borrowed)
                .map_err(|m| CheckpointError::Decode {
                    key: crate::error::shown(key),
                    stage: Stage::Integrity,
                    source: m,
                })?;
        }
        if let Some(enc) = &self.encrypter {
            return Ok(Cow::Owned(enc.open(&data, key)?));
        }
        if let Some(e) = &self.custom_encrypter {
            let plain = e
                .decrypt(&data, key)
                .map_err(|_| CheckpointError::Authentication {
                    key: crate::error::shown(key),
                })?;
            return Ok(Cow::Owned(plain));
        }
        Ok(data)
    }

    /// `v` with the pre-encoders undone, last first.
    fn undo_pre_encoders(&self, mut v: serde_json::Value, key: &str) -> Result<serde_json::Value> {
        for (index, p) in self.pre.iter().enumerate().rev() {
            v = p.decode(v).map_err(|e| CheckpointError::Decode {
                key: crate::error::shown(key),
                stage: Stage::PreEncoder {
                    index,
                    name: p.name().to_owned(),
                },
                source: e,
            })?;
        }
        Ok(v)
    }

    /// Decodes an entry without knowing the type it was saved from: for inspecting a store
    /// (`brisk-checkpoint show`). Every integrity check runs; JSON, YAML and MessagePack
    /// become a JSON value (with pre-encoders undone; NaN and ±inf show as `null`), `.npy`
    /// its dtype and shape, raw bytes their length.
    ///
    /// # Errors
    /// As [`decode`](Encoder::decode): the stage that rejected the entry.
    pub fn decode_untyped(&self, bytes: &[u8], key: &str) -> Result<serde_json::Value> {
        let fail = |stage: Stage, source: BoxError| CheckpointError::Decode {
            key: crate::error::shown(key),
            stage,
            source,
        };
        let data = self.open_layers(bytes, key)?;
        let ser_stage = self.ser_stage();
        let mut v = match self.serializer {
            _ if self.custom_serializer.is_some() => self
                .deserialize_json_value(&data)
                .map_err(|m| fail(ser_stage.clone(), m))?,
            None => serde_json::json!({ "bytes": data.len() }),
            Some(Serializer::Npy) => {
                let (descr, shape) =
                    npy::describe(&data).map_err(|m| fail(ser_stage.clone(), m))?;
                serde_json::json!({ "npy": { "descr": descr, "shape": shape }, "bytes": data.len() })
            }
            Some(_) => self
                .deserialize_json_value(&data)
                .map_err(|m| fail(ser_stage.clone(), m))?,
        };
        v = self.undo_pre_encoders(v, key)?;
        Ok(v)
    }

    fn serialize(&self, spec: &SaveSpec, value: &Value) -> Result<Vec<u8>, BoxError> {
        let typed = || {
            spec.serializable(value)
                .ok_or_else(|| format!("the value is not a {}", spec.type_name()))
        };
        if let Some(f) = &self.custom_serializer {
            return f.serialize(typed()?);
        }
        match self.serializer {
            None => value.downcast_ref::<Vec<u8>>().cloned().ok_or_else(|| {
                format!(
                    "without a serializer the result must be a Vec<u8>, not {}",
                    spec.type_name()
                )
                .into()
            }),
            Some(s @ (Serializer::Json | Serializer::Yaml | Serializer::MessagePack)) => {
                write_serde(s, typed()?)
            }
            Some(Serializer::Npy) => npy::encode(value).ok_or_else(|| {
                format!(
                    "npy stores ndarray arrays of numbers or bools; {} is not one",
                    spec.type_name()
                )
            })?,
        }
    }

    fn serialize_json_value(&self, v: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
        if let Some(f) = &self.custom_serializer {
            return f.serialize(v);
        }
        match self.serializer {
            Some(s @ (Serializer::Json | Serializer::Yaml | Serializer::MessagePack)) => {
                write_serde(s, v)
            }
            Some(Serializer::Npy) | None => {
                Err("pre-encoders need a serde serializer (JSON, YAML or MessagePack)".into())
            }
        }
    }

    fn deserialize_json_value(&self, data: &[u8]) -> Result<serde_json::Value, BoxError> {
        if let Some(f) = &self.custom_serializer {
            let v = f.deserialize(data, &mut |de| {
                erased_serde::deserialize::<serde_json::Value>(de).map(|v| Arc::new(v) as Value)
            })?;
            return v
                .downcast::<serde_json::Value>()
                .map(Arc::unwrap_or_clone)
                .map_err(|_| "the serializer returned another type".into());
        }
        match self.serializer {
            Some(Serializer::Json) => serde_json::from_slice(data).map_err(BoxError::from),
            Some(Serializer::Yaml) => yaml_serde::from_slice(data).map_err(BoxError::from),
            Some(Serializer::MessagePack) => rmp_serde::from_slice(data).map_err(BoxError::from),
            Some(Serializer::Npy) | None => {
                Err("pre-encoders need a serde serializer (JSON, YAML or MessagePack)".into())
            }
        }
    }

    fn deserialize(&self, spec: &SaveSpec, data: &[u8], stage: &Stage, key: &str) -> Result<Value> {
        let fail = |stage: Stage, source: BoxError| CheckpointError::Decode {
            key: crate::error::shown(key),
            stage,
            source,
        };
        let de_err = |e: erased_serde::Error| fail(stage.clone(), e.into());
        if let Some(f) = &self.custom_serializer {
            return f
                .deserialize(data, &mut |de| spec.deserialize(de))
                .map_err(|e| fail(stage.clone(), e));
        }
        match self.serializer {
            None => {
                if spec.type_id() == std::any::TypeId::of::<Vec<u8>>() {
                    Ok(Arc::new(data.to_vec()) as Value)
                } else {
                    Err(fail(
                        Stage::Value,
                        format!("raw bytes cannot become a {}", spec.type_name()).into(),
                    ))
                }
            }
            Some(Serializer::Json) => {
                let mut de = serde_json::Deserializer::from_slice(data);
                let v = spec
                    .deserialize(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))
                    .map_err(de_err)?;
                de.end().map_err(|e| fail(stage.clone(), e.into()))?;
                Ok(v)
            }
            Some(Serializer::Yaml) => {
                let de = yaml_serde::Deserializer::from_slice(data);
                spec.deserialize(&mut <dyn erased_serde::Deserializer<'_>>::erase(de))
                    .map_err(de_err)
            }
            Some(Serializer::MessagePack) => {
                let mut rest: &[u8] = data;
                let v = {
                    let mut de = rmp_serde::Deserializer::new(&mut rest);
                    spec.deserialize(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))
                        .map_err(de_err)?
                };
                if rest.is_empty() {
                    Ok(v)
                } else {
                    Err(fail(stage.clone(), "trailing bytes after the value".into()))
                }
            }
            Some(Serializer::Npy) => npy::decode(spec, data).map_err(|m| fail(stage.clone(), m)),
        }
    }
}

/// A value in one of the serde formats.
fn write_serde<T: serde::Serialize + ?Sized>(s: Serializer, v: &T) -> Result<Vec<u8>, BoxError> {
    match s {
        Serializer::Json => serde_json::to_vec(v).map_err(BoxError::from),
        Serializer::Yaml => yaml_serde::to_string(v)
            .map(String::into_bytes)
            .map_err(BoxError::from),
        Serializer::MessagePack => rmp_serde::to_vec_named(v).map_err(BoxError::from),
        Serializer::Npy => Err("npy is not a serde format".into()),
    }
}

/// The start of an entry with neither compressor nor encrypter: `BRISK` and format 1, then
/// the CRC-32 (IEEE, little-endian) of the rest.
const DIGEST_MAGIC: &[u8; 6] = b"BRISK\x01";

/// The payload of an entry that carries a CRC-32 header, checked.
fn check_digest(data: &[u8]) -> Result<&[u8], BoxError> {
    let Some(rest) = data.strip_prefix(DIGEST_MAGIC.as_slice()) else {
        return Err(
            "no integrity header (`BRISK\\x01` + CRC-32): not an entry of this format".into(),
        );
    };
    let (crc, payload) = rest
        .split_first_chunk::<4>()
        .ok_or("the integrity header is cut short")?;
    let (want, got) = (u32::from_le_bytes(*crc), crc32fast::hash(payload));
    if want != got {
        return Err(format!(
            "CRC-32 mismatch (stored {want:08x}, computed {got:08x}): the entry is corrupted"
        )
        .into());
    }
    Ok(payload)
}

/// One zstd frame of `data` at `level`, with its content size and checksum (a corrupted frame
/// fails to decode), after `reserve` zero bytes (room for an encrypter's nonce, so the frame
/// is not copied between the stages).
fn zstd_compress(level: i32, data: &[u8], reserve: usize) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; reserve + zstd::zstd_safe::compress_bound(data.len())];
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    let n = c.compress_to_buffer(data, &mut out[reserve..])?;
    out.truncate(reserve + n);
    Ok(out)
}

/// Decompresses one zstd frame (verifying its checksum when it has one). The content size a
/// frame declares is never trusted for an allocation: the output grows with the data the
/// frame really holds (at most what the machine's zstd decoder produces), and must then be
/// exactly the declared size.
pub(crate) fn zstd_decompress(data: &[u8]) -> Result<Vec<u8>, BoxError> {
    use std::io::Read as _;
    let declared =
        zstd::zstd_safe::get_frame_content_size(data).map_err(|_| "not a zstd frame".to_owned())?;
    // Reserve what the frame could plausibly hold; more is added as it is produced.
    let plausible = (data.len() as u64)
        .saturating_mul(64)
        .saturating_add(1 << 20);
    let reserve = declared.map_or(0, |n| n.min(plausible));
    let mut out = Vec::with_capacity(usize::try_from(reserve).map_err(BoxError::from)?);
    let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(BoxError::from)?;
    match declared {
        Some(n) => {
            decoder
                .take(n.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(BoxError::from)?;
            if out.len() as u64 != n {
                return Err(format!(
                    "the frame declares {n} bytes but holds {}{}",
                    out.len(),
                    if out.len() as u64 > n { " or more" } else { "" }
                )
                .into());
            }
        }
        None => {
            let mut decoder = decoder;
            decoder.read_to_end(&mut out).map_err(BoxError::from)?;
        }
    }
    Ok(out)
}
