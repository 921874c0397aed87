"""dask + zarr-python side of the zarr scenarios of `cargo xtask bench --compare-dask`.

    python zarr_compare.py --scenario zarr/write/2000x7500 --workers 2 --dir DIR
    python zarr_compare.py --scenario zarr/read_mean/2000x7500 --workers 2 --dir DIR
    python zarr_compare.py --scenario zarr/copy/2000x7500 --workers 2 --dir DIR --scale 10

write: dask.array.random normal(2000, 1000) float32 of shape 8000x7500 in the given chunks,
to_zarr with zstd level 3 and its checksum (Zarr v3, as Brisk writes by default), attributes set. read_mean: from_zarr and
(x**2 + x**3).mean(axis=0).compute(). copy: from_zarr stored chunk by chunk (`da.store`) into a
new array with the same chunks and codecs. `--scale K` makes the array K times as many rows
(`cargo xtask bench --scale`), in stores of its own. Threaded scheduler, `--workers` threads. Prints one
JSON line with the best time of `--repeat` runs and this process's peak RSS.
"""

import argparse
import json
import resource
import time

import dask
import dask.array as da
import zarr
from zarr.codecs import ZstdCodec

SHAPE = (8000, 7500)


def run(phase, chunks, path, shape):
    t = time.perf_counter()
    if phase == "write":
        x = da.random.normal(2000, 1000, size=shape, chunks=chunks).astype("float32")
        z = zarr.create_array(store=path, shape=shape, chunks=chunks, dtype="float32",
                              compressors=[ZstdCodec(level=3, checksum=True)], overwrite=True,
                              dimension_names=["time", "x"])
        z.attrs.update({"history": "dask comparison", "timestamp": time.time()})
        da.to_zarr(x, z)
    elif phase == "read_mean":
        x = da.from_zarr(path)
        m = (x**2 + x**3).mean(axis=0).compute()
        assert m.shape == (shape[1],)
    elif phase == "copy":
        src = zarr.open_array(path, mode="r")
        z = zarr.create_array(store=path.replace(".zarr", "-copy.zarr"), shape=src.shape,
                              chunks=src.chunks, dtype="float32",
                              compressors=[ZstdCodec(level=3, checksum=True)], overwrite=True,
                              dimension_names=["time", "x"])
        da.store(da.from_zarr(src), z, lock=False)
    else:
        raise SystemExit(f"unknown phase {phase}")
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--scale", type=int, default=1)
    a = p.parse_args()
    _, phase, chunking = a.scenario.split("/")
    chunks = tuple(int(x) for x in chunking.split("x"))
    suffix = "" if a.scale == 1 else f"-x{a.scale}"
    path = f"{a.dir}/dask-{chunking}{suffix}.zarr"
    shape = (SHAPE[0] * a.scale, SHAPE[1])
    dask.config.set(scheduler="threads", num_workers=a.workers)
    secs = min(run(phase, chunks, path, shape) for _ in range(max(1, a.repeat)))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"scenario": a.scenario, "scale": a.scale,
                      "bytes": shape[0] * shape[1] * 4, "build_s": 0.0, "run_s": secs, "total_s": secs,
                      "peak_rss_mib": rss_mib, "workers": a.workers,
                      "dask_version": dask.__version__, "zarr_version": zarr.__version__}))


if __name__ == "__main__":
    main()
