"""A photo's layered depth as ``photo3d convert`` builds it (working photo, the model's depth,
geometry, layers), for tests that look at the layers themselves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from photo3d import pipeline as pl
from photo3d.io import load_image
from photo3d.layers import LayerParams, LayeredDepth


def layered(path: str | Path, params: LayerParams | None = None,
            opts: pl.ConvertOptions | None = None) -> tuple[np.ndarray, LayeredDepth]:
    """(the working photo, its ``LayeredDepth``) with ``opts`` (default: the defaults), its layer
    parameters replaced by ``params`` if given."""
    photo = load_image(path)
    opts = opts or pl.ConvertOptions()
    if params is not None:
        opts = replace(opts, layer_params=params)
    small = pl.working_photo(photo, pl.working_shape(photo.width, photo.height, opts.working_side))
    disp, _ = pl.estimate_depth(photo, small, opts)
    geo = pl.to_geometry(disp, pl.camera_for(photo.width, photo.height, photo.focal_35mm), opts)
    return small, pl.layer_depth(geo, opts, small)
