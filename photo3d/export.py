"""Layer meshes + texture atlas -> GLB (via trimesh, then a small pass over the glTF JSON).

Conventions of every file photo3d writes:

- camera at the origin looking down -Z, +Y up (glTF's own camera frame), as a perspective
  camera node with the photo's field of view;
- one unlit material (``KHR_materials_unlit``), double-sided, ``alphaMode: MASK`` with the
  silhouette softness in the vertex colour's alpha (``COLOR_0``);
- one JPEG texture atlas with clamp-to-edge, mipmapped samplers;
- ``extras.photo3d``: depth convention, field of view, source size, parallax range, version.
"""

from __future__ import annotations

import io
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import __version__

DEFAULT_FOCAL_35MM = 28.0  # a phone's main camera (~65 deg horizontal on a 4:3 photo), when EXIF has none
DIAGONAL_35MM = math.hypot(36.0, 24.0)
MAX_TEXTURE_SIDE = 4096
DEPTH_CONVENTION = (
    "positions in camera space: camera at the origin looking down -Z, +Y up; "
    "depth = -z; inverse depth 1/depth is what the depth model predicts (larger = nearer)"
)

_CLAMP, _LINEAR, _LINEAR_MIPMAP_LINEAR = 33071, 9729, 9987
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass
class Camera:
    focal_px: float  # in source pixels
    width: int  # source size
    height: int
    focal_35mm: float
    focal_source: str  # "exif" | "default"

    @property
    def yfov(self) -> float:
        return 2.0 * math.atan(self.height / (2.0 * self.focal_px))

    @property
    def xfov(self) -> float:
        return 2.0 * math.atan(self.width / (2.0 * self.focal_px))


def camera_for(width: int, height: int, focal_35mm: float | None) -> Camera:
    """Pinhole camera of a photo from its 35 mm equivalent focal length (diagonal-matched)."""
    source = "exif" if focal_35mm else "default"
    f35 = float(focal_35mm or DEFAULT_FOCAL_35MM)
    focal_px = f35 / DIAGONAL_35MM * math.hypot(width, height)
    return Camera(focal_px, width, height, f35, source)


@dataclass
class MeshData:
    name: str
    vertices: np.ndarray  # (n, 3) float32
    faces: np.ndarray  # (m, 3) int32
    uv: np.ndarray  # (n, 2) float32, glTF convention (origin top-left)
    alpha: np.ndarray  # (n,) uint8


@dataclass
class ExportOptions:
    jpeg_quality: int = 80
    extras: dict[str, Any] = field(default_factory=dict)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline 4:2:0 JPEG (what every glTF viewer decodes); OpenCV's encoder is ~2x PIL's."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def _placeholder_jpeg() -> Image.Image:
    im = Image.open(io.BytesIO(encode_jpeg(np.zeros((8, 8, 3), np.uint8), 50)))
    im.load()
    return im


def preload() -> None:
    """Import trimesh's glTF writer (about 0.7 s of imports): called from a background thread
    while the depth network runs, so the export stage does not pay for it."""
    import trimesh.exchange.gltf  # noqa: F401
    from trimesh.visual.material import PBRMaterial  # noqa: F401
    from trimesh.visual.texture import TextureVisuals  # noqa: F401


def to_glb(meshes: list[MeshData], atlas_jpeg: bytes, camera: Camera, opts: ExportOptions) -> bytes:
    """GLB bytes of ``meshes`` sharing one material textured with ``atlas_jpeg``."""
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    material = PBRMaterial(
        name="photo",
        baseColorTexture=_placeholder_jpeg(),  # replaced by ``atlas_jpeg`` below (no re-encode)
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0,
        roughnessFactor=1.0,
        alphaMode="MASK",
        alphaCutoff=0.5,
        doubleSided=True,
    )
    scene = trimesh.Scene()
    for m in meshes:
        if len(m.faces) == 0:
            continue
        uv = m.uv.astype(np.float64).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # trimesh flips V back on export
        colors = np.full((len(m.vertices), 4), 255, np.uint8)
        colors[:, 3] = m.alpha
        visual = TextureVisuals(uv=uv, material=material)
        if (m.alpha < 255).any():  # COLOR_0 only carries the silhouette alpha
            visual.vertex_attributes["color"] = colors
        tm = trimesh.Trimesh(m.vertices, m.faces, visual=visual, process=False, validate=False)
        scene.add_geometry(tm, geom_name=m.name, node_name=m.name)

    def buffers(buffer_items, tree):
        keys = list(buffer_items.keys())
        accessors = tree["accessors"]
        accessors = list(accessors.values()) if hasattr(accessors, "values") else accessors
        for mesh in tree["meshes"]:
            for prim in mesh["primitives"]:
                acc = accessors[prim["indices"]]
                if acc["componentType"] == 5125 and acc.get("max", [0])[0] < 65535:
                    # 16-bit indices where they fit: a third less geometry to download
                    data = np.frombuffer(buffer_items[keys[acc["bufferView"]]], "<u4", acc["count"])
                    raw = data.astype("<u2").tobytes()
                    buffer_items[keys[acc["bufferView"]]] = raw + b"\x00" * ((4 - len(raw) % 4) % 4)
                    acc["componentType"] = 5123
        if tree.get("images"):
            view = tree["images"][0]["bufferView"]
            key = list(buffer_items.keys())[view]
            pad = (4 - len(atlas_jpeg) % 4) % 4
            buffer_items[key] = atlas_jpeg + b"\x00" * pad
            tree["images"][0]["mimeType"] = "image/jpeg"

    def finish(tree):
        _finish_tree(tree, camera, opts)

    data = trimesh.exchange.gltf.export_glb(
        scene, include_normals=False, buffer_postprocessor=buffers, tree_postprocessor=finish
    )
    return data


def _finish_tree(tree: dict, camera: Camera, opts: ExportOptions) -> None:
    tree["asset"]["generator"] = f"photo3d {__version__} (trimesh)"
    views = tree.get("bufferViews", [])
    for mesh in tree.get("meshes", []):
        for prim in mesh["primitives"]:
            targets = [(a, _ARRAY_BUFFER) for a in prim["attributes"].values()]
            targets += [(prim["indices"], _ELEMENT_ARRAY_BUFFER)] if "indices" in prim else []
            for acc, target in targets:
                view = tree["accessors"][acc].get("bufferView")
                if view is not None:
                    views[view]["target"] = target
    for mat in tree.get("materials", []):
        mat.setdefault("extensions", {})["KHR_materials_unlit"] = {}
    tree["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _CLAMP, "wrapT": _CLAMP}]
    for tex in tree.get("textures", []):
        tex["sampler"] = 0
    used = set(tree.get("extensionsUsed", []))
    used.add("KHR_materials_unlit")
    tree["extensionsUsed"] = sorted(used)
    tree["cameras"] = [
        {
            "name": "photo",
            "type": "perspective",
            "perspective": {
                "yfov": camera.yfov,
                "aspectRatio": camera.width / camera.height,
                "znear": 0.05,
                "zfar": 1000.0,
            },
        }
    ]
    nodes = tree.setdefault("nodes", [])
    nodes.append({"name": "camera", "camera": 0})
    tree["scenes"][0].setdefault("nodes", []).append(len(nodes) - 1)
    extras = {
        "version": __version__,
        "depth_convention": DEPTH_CONVENTION,
        "fov_y_deg": math.degrees(camera.yfov),
        "fov_x_deg": math.degrees(camera.xfov),
        "focal_35mm": camera.focal_35mm,
        "focal_source": camera.focal_source,
        "source_size": [camera.width, camera.height],
    }
    extras.update(opts.extras)
    tree["extras"] = {"photo3d": extras}


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, binary chunk) of a GLB."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError("not a GLB 2.0 file")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    tree = json.loads(data[20 : 20 + jlen])
    off = 20 + jlen
    binary = b""
    if off < len(data):
        blen, _ = struct.unpack_from("<II", data, off)
        binary = data[off + 8 : off + 8 + blen]
    return tree, binary
