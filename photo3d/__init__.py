"""photo3d: turn a single 2D photo into a 3D photo (layered depth mesh exported as glTF)."""

__version__ = "0.1.0"
