"""Decodes every checkpoint entry Brisk wrote (see benches/src/bin/checkpoint_interop.rs) with
Python's own libraries, exactly as the Brisk documentation describes the format:

    entry = encrypt?(compress?(serialize(value)))      with a compressor or an encrypter
    entry = b"BRISK\x01" || crc32(payload) (4 bytes, little-endian) || serialize(value)
                                                       with neither (zlib.crc32)
    encrypt: nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes), AAD = storage key
    compress: one zstd frame that declares its content size and carries its checksum
    serialize: JSON, YAML, MessagePack (structs as maps) or .npy

    python interop.py DIR
"""

import io
import json
import os
import sys
import zlib

import msgpack
import numpy as np
import yaml
import zstandard
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    root = sys.argv[1]
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    raw_key = bytes.fromhex(manifest["raw_key_hex"])
    with open(os.path.join(root, "_brisk", "encryption.json")) as f:
        kdf = json.load(f)
    assert kdf["kdf"] == "argon2id", kdf
    pass_key = hash_secret_raw(
        manifest["passphrase"].encode(), bytes.fromhex(kdf["salt"]), time_cost=kdf["t_cost"],
        memory_cost=kdf["m_cost"], parallelism=kdf["p_cost"], hash_len=32, type=Type.ID,
        version=kdf["version"])
    checked = 0
    for e in manifest["entries"]:
        key = e["key"]
        with open(os.path.join(root, key), "rb") as f:
            data = f.read()
        if not e["encryption"] and not e["zstd"]:
            assert data[:6] == b"BRISK\x01", f"{key}: no integrity header"
            crc = int.from_bytes(data[6:10], "little")
            data = data[10:]
            assert zlib.crc32(data) == crc, f"{key}: CRC-32 mismatch"
        if e["encryption"]:
            k = raw_key if e["encryption"] == "key" else pass_key
            nonce, body = data[:12], data[12:]
            data = AESGCM(k).decrypt(nonce, body, key.encode())
            # The storage key is authenticated: the entry does not open under another key.
            try:
                AESGCM(k).decrypt(nonce, body, (key + "x").encode())
                raise SystemExit(f"{key}: decrypted under the wrong key")
            except Exception as err:  # cryptography raises InvalidTag
                if type(err).__name__ != "InvalidTag":
                    raise
        if e["zstd"]:
            params = zstandard.get_frame_parameters(data)
            assert params.content_size > 0, f"{key}: frame does not declare its size"
            assert params.has_checksum, f"{key}: frame carries no checksum"
            data = zstandard.decompress(data)
        ser = e["serializer"]
        if ser == "json":
            value = json.loads(data)
        elif ser == "yaml":
            value = yaml.safe_load(data)
        elif ser == "msgpack":
            value = msgpack.unpackb(data, raw=False)
        elif ser == "npy":
            a = np.load(io.BytesIO(data), allow_pickle=False)
            value = {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.ravel().tolist()}
        else:
            raise SystemExit(f"unknown serializer {ser}")
        if value != e["expected"]:
            raise SystemExit(f"{key} ({ser}): decoded {value!r}, expected {e['expected']!r}")
        checked += 1
    print(f"python decoded all {checked} Brisk checkpoint entries")


if __name__ == "__main__":
    main()
