"""Shared test helpers (one place each): paths and test tools (``paths``), the CLI in-process and
as a user runs it (``cli``), test photos and the album of good and bad files (``photos``),
model-free batch tasks (``batch_tasks``), the Khronos glTF validator (``gltf``), headless Chromium
(``browser``), synthetic depth maps for the layer, inpaint and mesh tests (``synthetic``).
Tests import them as ``from helpers.cli import ...`` (``tests/`` is on sys.path)."""
