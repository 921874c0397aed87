"""zarr-python side of `cargo xtask interop`: checks what Brisk wrote, writes what Brisk checks.

    python interop.py check DIR   # every case of cases.json under DIR/<name>, written by Brisk
    python interop.py write DIR   # the same cases, written by zarr-python

Values: element i (flat, C order) is (i * 37) % 113 in the case's dtype (bool: i % 3 == 0).
Attributes: {"writer": ..., "case": name, "nested": {"list": [1, 2.5, "x"]}}; dimension names
d0, d1, ... (v2: the `_ARRAY_DIMENSIONS` attribute).
"""

import json
import pathlib
import sys

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec, GzipCodec, ZstdCodec

CASES = json.loads((pathlib.Path(__file__).parent / "cases.json").read_text())


def expected(case):
    n = int(np.prod(case["shape"]))
    i = np.arange(n, dtype=np.int64)
    if case["dtype"] == "bool":
        v = i % 3 == 0
    else:
        v = ((i * 37) % 113).astype(case["dtype"])
    return v.reshape(case["shape"])


def compressor(case):
    c = case["codec"]
    if case["format"] == 3:
        return {
            "zstd": ZstdCodec(level=3, checksum=bool(case.get("zstd_checksum"))),
            "blosc": BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle),
            "gzip": GzipCodec(level=5),
            "none": None,
        }[c]
    return {
        "zstd": numcodecs.Zstd(level=3, checksum=bool(case.get("zstd_checksum"))),
        "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
        "gzip": numcodecs.GZip(level=5),
        "none": None,
    }[c]


def dims(case):
    return [f"d{k}" for k in range(len(case["shape"]))]


def check(root):
    failures = []
    for case in CASES:
        path = root / case["name"]
        try:
            a = zarr.open_array(str(path), mode="r")
            got = a[...]
            want = expected(case)
            assert a.metadata.zarr_format == case["format"], f"format {a.metadata.zarr_format}"
            assert str(a.dtype) == case["dtype"], f"dtype {a.dtype}"
            assert got.shape == want.shape, f"shape {got.shape}"
            assert np.array_equal(got, want), "values differ"
            attrs = dict(a.attrs)
            assert attrs.get("writer") == "brisk", f"attrs {attrs}"
            assert attrs.get("nested") == {"list": [1, 2.5, "x"]}, f"attrs {attrs}"
            if case["format"] == 3:
                assert list(a.metadata.dimension_names) == dims(case), a.metadata.dimension_names
                names = [c.to_dict()["name"] for c in a.metadata.codecs]
                assert ("crc32c" in names) == bool(case.get("crc32c")), f"codecs {names}"
                if case.get("zstd_checksum"):
                    zstd = [c.to_dict() for c in a.metadata.codecs if c.to_dict()["name"] == "zstd"]
                    assert zstd and zstd[0]["configuration"]["checksum"], f"codecs {zstd}"
                if "shards" in case:
                    assert tuple(a.shards) == tuple(case["shards"]), f"shards {a.shards}"
            else:
                assert attrs.get("_ARRAY_DIMENSIONS") == dims(case), attrs
            assert tuple(a.chunks) == tuple(case["chunks"]), f"chunks {a.chunks}"
            print(f"ok   {case['name']}")
        except Exception as e:  # report every case, then fail
            failures.append(f"{case['name']}: {e!r}")
            print(f"FAIL {case['name']}: {e!r}")
    if failures:
        raise SystemExit(f"{len(failures)} case(s) failed")


def write(root):
    for case in CASES:
        kwargs = dict(
            store=str(root / case["name"]),
            shape=case["shape"],
            chunks=case["chunks"],
            dtype=case["dtype"],
            zarr_format=case["format"],
            overwrite=True,
            attributes={"writer": "zarr-python", "case": case["name"], "nested": {"list": [1, 2.5, "x"]}},
        )
        c = compressor(case)
        kwargs["compressors"] = [] if c is None else [c]
        if case.get("crc32c"):
            kwargs["compressors"].append(Crc32cCodec())
        if not kwargs["compressors"]:
            kwargs["compressors"] = None
        if case["format"] == 3:
            kwargs["dimension_names"] = dims(case)
            if "shards" in case:
                kwargs["shards"] = case["shards"]
        else:
            kwargs["attributes"]["_ARRAY_DIMENSIONS"] = dims(case)
        a = zarr.create_array(**kwargs)
        a[...] = expected(case)
        print(f"wrote {case['name']}")


if __name__ == "__main__":
    mode, root = sys.argv[1], pathlib.Path(sys.argv[2])
    {"check": check, "write": write}[mode](root)
