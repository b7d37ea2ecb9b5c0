"""Defaults and choices that the options dataclasses and the command line share (``--help`` shows them).

A light module: ``photo3d --help`` imports it without numpy, OpenCV or torch.
"""

from enum import StrEnum
from importlib import resources
from pathlib import Path


class Engine(StrEnum):
    """Where a batch runs (``--engine``)."""

    local = "local"  # this machine: in-process or a process pool
    ray = "ray"  # a Ray cluster


MODELS_DIR = Path(str(resources.files("photo3d").joinpath("models")))  # the bundled models and their manifest
MAX_MEGAPIXELS = 100.0  # larger images are refused (decompression bombs, memory)
DEPTH_SOURCE = "auto"  # auto | embedded | stereo | model: the photo's own depth first
JPEG_QUALITY = 80  # the GLB's textures
GLB_MAX_BYTES = 2_000_000  # GLB size budget: the texture takes <= 60 %, the mesh the rest (pipeline.fit_to_budget)
MAX_TEXTURE_SIDE = 4096  # the photo's texture, longer side
MAX_TEXTURE_LIMIT = 16384  # --max-texture at most: WebGL's largest texture on most GPUs (and under OpenCV's 32,767-px remap)
PARALLAX = 0.04  # nearest vs farthest point move by this share of the width shown at full offset
MAX_ASPECT = 21 / 9  # a panorama is shown (viewer, videos) at its centre 21:9 (a tall photo's at 9:21), not as a sliver
PARALLAX_RANGE = (0.001, 0.2)  # what --parallax accepts (stronger than PARALLAX: layers are cut where PARALLAX cuts)
VIDEO_PATH = "circle"  # video camera path: circle | swing | zoom | dolly-zoom
VIDEO_SECONDS = 4.0
VIDEO_FPS = 30.0
VIDEO_SIZE_RANGE = (16, 8192)  # what --size accepts (a video's or stereo still's longer side, pixels)
SHARE_MAX_BYTES = 4_000_000  # GIF / animated WebP size budget: frame rate, colours, then size give way
