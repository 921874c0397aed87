"""xarray side of the dataset cases of `cargo xtask interop`.

    python dataset_interop.py check DIR      # DIR/v3 and DIR/v2, written by Brisk's to_zarr_dataset
    python dataset_interop.py write DIR      # DIR/{v3,v2}-{consolidated,listed}, written by xarray
    python dataset_interop.py pipeline DIR MEAN   # examples/zarr_pipeline's output and its mean

The dataset, on both sides: dims time=6, x=5; coordinates time = i * 1.5 (days), x = i * 0.25;
temperature[t, x] = t * 10 + x as float32 (units K); mask = (t + x) % 2 as uint8; attribute
title = "brisk dataset". xarray's datasets also hold `packed`: float values
(t * 10 + x) / 2 + 100 stored as int16 with scale_factor 0.5, add_offset 100 and _FillValue -1,
with the value at (t=2, x=3) missing.
"""

import math
import sys
import warnings

import numpy as np
import xarray as xr

T, X = 6, 5


def expected():
    t = np.arange(T)[:, None]
    x = np.arange(X)[None, :]
    return {
        "temperature": (t * 10 + x).astype("float32"),
        "mask": ((t + x) % 2).astype("uint8"),
        "time": np.arange(T) * 1.5,
        "x": np.arange(X) * 0.25,
    }


def fail(msg):
    raise SystemExit(f"dataset interop: {msg}")


def check_brisk(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "failed to open consolidated metadata"
        ds = xr.open_zarr(path, consolidated=True)
    e = expected()
    if dict(ds.sizes) != {"time": T, "x": X}:
        fail(f"{path}: dims {dict(ds.sizes)}")
    if sorted(ds.coords) != ["time", "x"] or sorted(ds.data_vars) != ["mask", "temperature"]:
        fail(f"{path}: coords {list(ds.coords)}, data_vars {list(ds.data_vars)}")
    for name in ["temperature", "mask", "time", "x"]:
        got = ds[name].values
        if got.dtype != e[name].dtype or not np.array_equal(got, e[name]):
            fail(f"{path}: {name} is {got.dtype} {got.tolist()}")
    if ds["temperature"].dims != ("time", "x"):
        fail(f"{path}: temperature dims {ds['temperature'].dims}")
    if ds.attrs.get("title") != "brisk dataset":
        fail(f"{path}: attrs {ds.attrs}")
    if ds["temperature"].attrs.get("units") != "K" or ds["time"].attrs.get("units") != "days":
        fail(f"{path}: variable attrs {ds['temperature'].attrs} {ds['time'].attrs}")
    print(f"xarray opened {path}: dims, coords, values and attributes as written")


def write(root):
    e = expected()
    packed = e["temperature"].astype("float64") / 2 + 100
    packed[2, 3] = np.nan
    ds = xr.Dataset(
        {
            "temperature": (("time", "x"), e["temperature"], {"units": "K"}),
            "mask": (("time", "x"), e["mask"]),
            "packed": (("time", "x"), packed),
        },
        coords={"time": ("time", e["time"], {"units": "days"}), "x": ("x", e["x"])},
        attrs={"title": "brisk dataset"},
    )
    enc = {"packed": {"dtype": "int16", "scale_factor": 0.5, "add_offset": 100.0, "_FillValue": -1}}
    for fmt in (3, 2):
        for consolidated in (True, False):
            kind = "consolidated" if consolidated else "listed"
            path = f"{root}/v{fmt}-{kind}"
            ds.to_zarr(path, mode="w", zarr_format=fmt, consolidated=consolidated, encoding=enc)
            print(f"xarray wrote {path}")


def pipeline(path, brisk_mean):
    ds = xr.open_zarr(path)
    x = ds["data"].astype("float64")
    m = float((x**2 + x**3).mean("time").mean().compute())
    brisk_mean = float(brisk_mean)
    if not math.isclose(m, brisk_mean, rel_tol=1e-6):
        fail(f"{path}: xarray's mean {m!r} differs from Brisk's {brisk_mean!r}")
    if dict(ds["data"].sizes).keys() != {"time", "x"} or "time" not in ds.coords:
        fail(f"{path}: data dims {ds['data'].dims}, coords {list(ds.coords)}")
    print(f"xarray opened {path}: mean of (x**2 + x**3) over time {m:.6e} = Brisk's")


if __name__ == "__main__":
    cmd, arg = sys.argv[1], sys.argv[2]
    if cmd == "check":
        for fmt in ("v3", "v2"):
            check_brisk(f"{arg}/{fmt}")
    elif cmd == "write":
        write(arg)
    elif cmd == "pipeline":
        pipeline(arg, sys.argv[3])
    else:
        fail(f"unknown command {cmd}")
