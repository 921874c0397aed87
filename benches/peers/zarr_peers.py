"""The Zarr peers of `cargo xtask bench --peers`: read + (x**2 + x**3).mean(axis 0) of the
array Brisk wrote (8000x7500 float32, zstd level 3 with checksum, Zarr v3), each peer the way
its own documentation recommends for speed, on `--workers` threads.

    python zarr_peers.py --peer dask|dask-zarrs|tensorstore --path ARRAY --workers 2 [--repeat 3]

- dask:        dask.array.from_zarr + the threaded scheduler (zarr-python's default pipeline);
- dask-zarrs:  the same with zarr-python's codec pipeline set to the Rust `zarrs` one
               (`zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})`);
- tensorstore: tensorstore's zarr3 driver with its I/O and copy concurrency limited to the
               workers, chunk-aligned row blocks read in parallel, each reduced with numpy's
               fastest form x*x + x*x*x over cache-sized slabs and summed in float64.

Imports happen before timing (an application imports once); `--repeat` repetitions in one
process, the best kept (the harness gives Brisk the same). Prints one JSON line: the best
time of the repetitions, the result's mean (to check it
against Brisk's) and this process's peak RSS.
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
    if zarrs_pipeline:
        zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    dask.config.set(scheduler="threads", num_workers=workers)
    x = da.from_zarr(path)
    return (x**2 + x**3).mean(axis=0).compute()


def tensorstore_read_mean(path, workers):
    ctx = ts.Context({
        "data_copy_concurrency": {"limit": workers},
        "file_io_concurrency": {"limit": workers},
    })
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}},
                read=True, context=ctx).result()
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", required=True, choices=["dask", "dask-zarrs", "tensorstore"])
    p.add_argument("--path", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    best, result = None, None
    for _ in range(max(1, a.repeat)):
        t = time.perf_counter()
        if a.peer == "tensorstore":
            result = tensorstore_read_mean(a.path, a.workers)
        else:
            result = dask_read_mean(a.path, a.workers, a.peer == "dask-zarrs")
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    print(json.dumps({"peer": a.peer, "total_s": best, "mean": float(np.mean(result)),
                      "values": int(np.size(result)),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "workers": a.workers}))


if __name__ == "__main__":
    main()
