"""The Zarr store of a map job: its layout, its metadata, and which chunks are complete.

A store is a Zarr (format 3) group, a folder that ``zarr.open_group``, ``dask.array.
from_zarr`` and ``xarray.open_zarr`` open directly. For N images of size H x W and a
chunk size K:

    <method>       float32 (N, H, W), chunks (K, H, W): one map per image, as
                   ``saliency.to_map`` makes it (Grad-CAM upsampled to the image);
                   NaN for an image that could not be read
    class          int32 (N,): the predicted class (-1: unreadable), the class explained
    score          float32 (N,): its score before the softmax (NaN: unreadable)
    probability    float32 (N,): its softmax probability (NaN: unreadable)
    ok             bool (N,): the image was read
    error          str (N,): why not ("" when ok)
    image          str (N,): the image list (paths relative to the folder, or test-split
                   indices)
    done           bool (ceil(N / K),), one chunk each: chunk k is complete

and beside the store, ``<name>_predictions.csv`` (``attribute.predictions_path``): the
predictions as a table, written last, by the driver.

Every array has chunks of K images along its first axis, named "image" (dimension names,
which xarray reads); ``done`` has one per chunk. The group's attributes say what made it:
``{"format": "minicnn-maps", "version", "model": {"sha256", "path"}, "methods",
"size", "chunk", "n_images", "images_sha256", "source", "class_names"}``.

Restarting: a task writes its chunk of every array, and only then sets ``done[k]``, so a
chunk whose ``done`` is False (never written, or a worker died while writing it) is
computed again, and one whose ``done`` is True is skipped. No two tasks write the same
Zarr chunk, so they need no lock.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

__all__ = ["StoreError", "FORMAT", "VERSION", "PREDICTIONS", "identity", "prepare",
           "open_store", "done_chunks", "write_chunk", "chunk_bounds"]

FORMAT = "minicnn-maps"
VERSION = 1
PREDICTIONS = ("class", "score", "probability", "ok", "error")
# what a store must agree on to be resumed rather than refused
_SAME = ("model", "methods", "lrp_rule", "size", "chunk", "n_images", "images_sha256",
         "source")


class StoreError(ValueError):
    """A store that cannot be used: another model's or method set's, not a minicnn store."""


def images_sha256(images) -> str:
    """A fingerprint of the image list (so a store is never resumed for other images)."""
    return hashlib.sha256("\n".join(images).encode("utf-8", "surrogateescape")).hexdigest()


def identity(model_sha256: str, model_path, methods, size, chunk: int, images, source,
             class_names=()) -> dict:
    """The attributes of a store for this job. With "lrp" among the methods, the rule its maps
    were made with (the default composite: a store is never resumed under another)."""
    from minicnn.saliency.lrp import DEFAULT_RULE
    return {"format": FORMAT, "version": VERSION,
            "model": {"sha256": model_sha256, "path": None if model_path is None
                      else str(model_path)},
            "methods": list(methods), "lrp_rule": DEFAULT_RULE if "lrp" in methods else None,
            "size": [int(s) for s in size], "chunk": int(chunk),
            "n_images": len(images), "images_sha256": images_sha256(images),
            "source": source, "class_names": list(class_names)}


def chunk_bounds(n_images: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of every chunk."""
    return [(a, min(a + chunk, n_images)) for a in range(0, n_images, chunk)]


def _read_attrs(path: Path):
    """The group attributes of an existing minicnn store, None if path holds nothing (or an
    empty folder); StoreError if it holds something else."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    if not path.is_dir():
        raise StoreError(f"{path}: is a file, not a Zarr store (a folder)")
    try:
        meta = json.loads((path / "zarr.json").read_text())
        attrs = meta.get("attributes", {})
    except (OSError, ValueError, AttributeError):
        attrs = {}
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: exists and is not a minicnn map store; choose another "
                         f"path (it is never replaced, even with --overwrite)")
    return attrs


def _difference(old: dict, new: dict) -> str:
    if old.get("version") != VERSION:
        return f"format version {old.get('version')}, not {VERSION}"
    if old.get("model", {}).get("sha256") != new["model"]["sha256"]:
        return (f"another model (weights sha256 {str(old.get('model', {}).get('sha256'))[:12]}"
                f"..., this one {new['model']['sha256'][:12]}...)")
    if old.get("methods") != new["methods"]:
        return (f"another method set ({','.join(old.get('methods') or [])}, asked "
                f"{','.join(new['methods'])})")
    for key in _SAME:
        if key != "model" and old.get(key) != new[key]:
            return f"another {key.replace('_', ' ')} ({old.get(key)!r}, asked {new[key]!r})"
    return ""


def prepare(path, attrs: dict, images, overwrite: bool = False):
    """The store at ``path`` for a job with these attributes, before any work:

    - nothing there (or an empty folder): created, every chunk to do;
    - a store of the same job: opened as it is, to be resumed (its complete chunks skipped);
    - a store of another model, method set, image list or chunk size: StoreError, unless
      ``overwrite``, which deletes it and starts afresh;
    - anything else there: StoreError, even with ``overwrite``.
    Returns the zarr Group."""
    import zarr
    path = Path(path)
    old = _read_attrs(path)
    if old is not None:
        why = _difference(old, attrs)
        if not why:
            return zarr.open_group(str(path), mode="r+")
        if not overwrite:
            raise StoreError(f"{path}: this store holds maps of {why}; use --overwrite "
                             f"(overwrite=True) to replace it, or choose another path")
        shutil.rmtree(path)
    return _create(path, attrs, images)


def _create(path: Path, attrs: dict, images):
    import zarr
    n, chunk = len(images), attrs["chunk"]
    H, W = attrs["size"]
    group = zarr.open_group(str(path), mode="w")
    for name in attrs["methods"]:
        group.create_array(name, shape=(n, H, W), chunks=(chunk, H, W), dtype="float32",
                           fill_value=np.nan, dimension_names=("image", "y", "x"))
    for name, dtype, fill in (("class", "int32", -1), ("score", "float32", np.nan),
                              ("probability", "float32", np.nan), ("ok", "bool", False),
                              ("error", str, ""), ("image", str, "")):
        group.create_array(name, shape=(n,), chunks=(chunk,), dtype=dtype, fill_value=fill,
                           dimension_names=("image",))
    group.create_array("done", shape=(len(chunk_bounds(n, chunk)),), chunks=(1,),
                       dtype="bool", fill_value=False, dimension_names=("chunk",))
    group["image"][:] = np.asarray(images, dtype=str)
    group.attrs.update(attrs)        # last: a store without them is not taken for ours
    return group


def open_store(path, mode: str = "r"):
    """An existing store's zarr Group."""
    import zarr
    return zarr.open_group(str(path), mode=mode)


def done_chunks(group) -> np.ndarray:
    """bool (number of chunks,): which chunks are complete."""
    return np.asarray(group["done"][:], dtype=bool)


def write_chunk(group, k: int, start: int, stop: int, maps: dict, predictions: dict) -> None:
    """Chunk k (images start..stop-1) of every array, then its completion mark.
    maps: {method: (B, H, W)}; predictions: {name in PREDICTIONS: (B,)}."""
    for name, values in maps.items():
        group[name][start:stop] = np.asarray(values, np.float32)
    for name in PREDICTIONS:
        group[name][start:stop] = predictions[name]
    group["done"][k] = True                  # only now: the chunk is whole
