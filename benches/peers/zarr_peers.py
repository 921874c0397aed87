"""The Zarr peers of `cargo xtask bench --peers`, on the array Brisk wrote (8000x7500 float32,
zstd level 3 with checksum, Zarr v3), each peer the way its own documentation recommends for
speed, on `--workers` threads. Phases:

- write:     the array, already in memory (read from Brisk's store before the timing), written
             to a new array with the same chunks and codecs;
- copy:      Brisk's array copied chunk by chunk to a new array;
- read_mean: read + (x**2 + x**3).mean(axis 0).

    python zarr_peers.py --peer dask|dask-zarrs|tensorstore --phase write|copy|read_mean \
        --path ARRAY --out NEW_ARRAY --workers 2 [--repeat 3]

- dask:        dask.array.from_zarr + the threaded scheduler (zarr-python's default pipeline);
- dask-zarrs:  the same with zarr-python's codec pipeline set to the Rust `zarrs` one
               (`zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})`);
- tensorstore: tensorstore's zarr3 driver with its I/O and copy concurrency limited to the
               workers, chunk-aligned row blocks read in parallel, each reduced with numpy's
               fastest form x*x + x*x*x over cache-sized slabs and summed in float64.

Imports happen before timing (an application imports once); `--repeat` repetitions in one
process, the best kept (the harness gives Brisk the same). Prints one JSON line: the best
time of the repetitions, the mean of the result (read_mean) or of the written array (read
back after the timing), to check against Brisk's, and this process's peak RSS.
"""

import argparse
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import tensorstore as ts
import zarr
import zarrs  # noqa: F401  (registers the zarrs codec pipeline)

# Cache-sized slabs for numpy: x*x + x*x*x on a whole 60 MB chunk makes three 60 MB
# temporaries; on 16 rows at a time they stay in cache (measured fastest of 16/64/256/whole).
SLAB_ROWS = 16


def dask_read_mean(path, workers, zarrs_pipeline):
    configure_dask(workers, zarrs_pipeline)
    x = da.from_zarr(path)
    return (x**2 + x**3).mean(axis=0).compute()


def tensorstore_read_mean(path, workers):
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}},
                read=True, context=ts_context(workers)).result()
    rows, cols = t.shape
    step = t.chunk_layout.read_chunk.shape[0]

    def part(r0):
        x = t[r0:min(r0 + step, rows)].read().result()
        acc = np.zeros(cols, dtype=np.float64)
        for s in range(0, x.shape[0], SLAB_ROWS):
            y = x[s:s + SLAB_ROWS]
            acc += (y * y + y * y * y).sum(axis=0, dtype=np.float64)
        return acc

    with ThreadPoolExecutor(workers) as ex:
        total = sum(ex.map(part, range(0, rows, step)))
    return total / rows


def ts_context(workers):
    return ts.Context({
        "data_copy_concurrency": {"limit": workers},
        "file_io_concurrency": {"limit": workers},
    })


def ts_create(out, shape, chunks, workers):
    """A new zarr3 array with Brisk's codecs (bytes + zstd level 3 with checksum)."""
    return ts.open({
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": out},
        "metadata": {
            "shape": list(shape),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
            "chunk_key_encoding": {"name": "default"},
            "data_type": "float32",
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 3, "checksum": True}},
            ],
        },
    }, create=True, delete_existing=True, context=ts_context(workers)).result()


def zarr_create(out, shape, chunks):
    return zarr.create_array(
        store=out, shape=shape, chunks=chunks, dtype="float32", zarr_format=3,
        compressors=zarr.codecs.ZstdCodec(level=3, checksum=True), overwrite=True)


def configure_dask(workers, zarrs_pipeline):
    if zarrs_pipeline:
        zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    dask.config.set(scheduler="threads", num_workers=workers)


def write(peer, data, chunks, out, workers):
    if peer == "tensorstore":
        t = ts_create(out, data.shape, chunks, workers)
        t.write(data).result()
    else:
        z = zarr_create(out, data.shape, chunks)
        da.store(da.from_array(data, chunks=chunks), z, lock=False)


def copy(peer, path, out, workers):
    if peer == "tensorstore":
        src = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}},
                      read=True, context=ts_context(workers)).result()
        dst = ts_create(out, src.shape, src.chunk_layout.read_chunk.shape, workers)
        dst.write(src).result()
    else:
        src = zarr.open_array(path, mode="r")
        z = zarr_create(out, src.shape, src.chunks)
        da.store(da.from_zarr(src), z, lock=False)


def written_mean(out):
    """The mean of a written array, read back with zarr-python (not timed)."""
    return float(np.mean(zarr.open_array(out, mode="r")[...], dtype=np.float64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", required=True, choices=["dask", "dask-zarrs", "tensorstore"])
    p.add_argument("--phase", default="read_mean", choices=["write", "copy", "read_mean"])
    p.add_argument("--path", required=True)
    p.add_argument("--out")
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    if a.peer != "tensorstore":
        configure_dask(a.workers, a.peer == "dask-zarrs")
    data, chunks = None, None
    if a.phase == "write":
        src = zarr.open_array(a.path, mode="r")
        data, chunks = src[...], src.chunks
    best, result = None, None
    for _ in range(max(1, a.repeat)):
        t = time.perf_counter()
        if a.phase == "write":
            write(a.peer, data, chunks, a.out, a.workers)
        elif a.phase == "copy":
            copy(a.peer, a.path, a.out, a.workers)
        elif a.peer == "tensorstore":
            result = tensorstore_read_mean(a.path, a.workers)
        else:
            result = dask_read_mean(a.path, a.workers, a.peer == "dask-zarrs")
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    mean = float(np.mean(result)) if a.phase == "read_mean" else written_mean(a.out)
    print(json.dumps({"peer": a.peer, "phase": a.phase, "total_s": best, "mean": mean,
                      "values": int(np.size(result)) if result is not None else None,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "workers": a.workers}))


if __name__ == "__main__":
    main()
