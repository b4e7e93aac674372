"""Collections: compress and decompress folders, and tile large rasters, locally or on a Dask cluster.

The driver process (the one that runs ``collage batch``) does every file operation — finding
inputs, hashing them, writing outputs atomically, appending the manifest — and sends the bytes of
each job to a worker; workers only compute. So a cluster needs no shared filesystem, and what is
on disk is always what the manifest says: a line is appended (and flushed to disk) only after its
output is in place, so an interrupted run loses nothing already written and a rerun skips it.

* :func:`compress_folder` / :func:`decompress_folder`: every image (``.clg`` file) under a folder;
* :func:`tile_image` / :func:`mosaic_image`: a large image as a grid of independently coded tiles
  described by ``mosaic.json``, and its decode stitched back at any integer scale;
* engines (``engine.py``): a Dask ``LocalCluster`` of worker processes, an existing cluster by
  scheduler address, or this process alone.
"""

from .engine import DaskEngine, SerialEngine, make_engine
from .folders import BatchSummary, compress_folder, decompress_folder
from .manifest import ManifestRecord, read_manifest
from .tiles import MosaicLayout, mosaic_image, read_layout, tile_image

__all__ = [
    "BatchSummary",
    "DaskEngine",
    "ManifestRecord",
    "MosaicLayout",
    "SerialEngine",
    "compress_folder",
    "decompress_folder",
    "make_engine",
    "mosaic_image",
    "read_layout",
    "read_manifest",
    "tile_image",
]
