"""NAT: photo-like rendering of a scene.

The scene's polygons are drawn into a label map once; colour, per-part shading,
textures, lighting, colour casts, vignetting, sensor noise and blur are then applied
with whole-array NumPy operations, so a 64x64 image costs about a millisecond.
Small unnamed clutter blobs are added that belong to no object.
"""

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cmp_tf.data.synthcmp.scene import ScenePart, pixel_polygons

MAX_PARTS = 255  # label map is 8-bit; id 0 is unused
TEXTURE_STRENGTH = {
    "smooth": 0.03, "gradient": 0.02, "noise": 0.10, "blotch": 0.16, "planks": 0.16,
    "tiles": 0.18, "waves": 0.12, "bricks": 0.16,
}


@functools.lru_cache(maxsize=8)
def _indices(size):
  return np.indices((size, size))


@functools.lru_cache(maxsize=8)
def _grid(size):
  coords = (np.arange(size, dtype=np.float32) + 0.5) / size
  return np.meshgrid(coords, coords, indexing="ij")  # Y, X


def _texture_fields(used, size, draws):
  """One field in about [-1, 1] per texture in `used` (sorted, so RNG use is stable)."""
  Y, X = _grid(size)
  rng = draws.rng
  fields = {}
  grain = None
  for name in sorted(used):
    if name in ("smooth", "gradient", "noise"):  # plain grain: one field serves all three
      if grain is None:
        grain = rng.standard_normal((size, size), np.float32)
      field = grain
    elif name == "blotch":
      coarse = rng.standard_normal((max(2, size // 8),) * 2).astype(np.float32)
      field = np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.BILINEAR))
      field = field + 0.35 * rng.standard_normal((size, size)).astype(np.float32)
    elif name == "planks":
      period = draws.uniform(0.06, 0.14)
      phase = draws.random()
      field = np.where(((Y / period + phase) % 1.0) < 0.12, -1.5, 0.0).astype(np.float32)
      field += 0.4 * np.sin(2 * np.pi * (X * draws.uniform(3, 8) + draws.random()))
    elif name == "tiles":
      period = draws.uniform(0.05, 0.12)
      lines = (((Y / period) % 1.0) < 0.1) | (((X / period) % 1.0) < 0.1)
      field = np.where(lines, -1.5, 0.3).astype(np.float32)
    elif name == "waves":
      freq = draws.uniform(10, 22)
      field = np.sin(2 * np.pi * (Y * freq + 0.5 * np.sin(2 * np.pi * X * draws.uniform(2, 5))
                                  + draws.random())).astype(np.float32)
    else:  # bricks
      row = draws.uniform(0.03, 0.06)
      rows = np.floor(Y / row)
      offset = (rows % 2) * 0.5
      joints = (((Y / row) % 1.0) < 0.15) | ((((X / (2 * row)) + offset) % 1.0) < 0.08)
      field = np.where(joints, -1.5, 0.2).astype(np.float32)
    fields[name] = field
  return fields


def _clutter(scene, draws):
  """Small blobs of random colour on the ground: texture, not objects."""
  blobs = []
  for _ in range(draws.integer(0, 5)):
    cy = draws.uniform(max(scene.horizon, 0.3), 1.0)
    cx = draws.uniform(0.0, 1.0)
    r = draws.uniform(0.01, 0.035)
    n = draws.integer(3, 6)
    angles = np.sort(draws.rng.uniform(0, 2 * np.pi, n))
    radii = r * draws.rng.uniform(0.5, 1.0, n)
    points = np.stack([cy + radii * np.sin(angles), cx + radii * np.cos(angles)], 1)
    rgb = tuple(draws.uniform(20, 235) for _ in range(3))
    blobs.append(ScenePart(points.astype(np.float32), rgb, "noise"))
  return blobs


def render(scene, draws, size):
  """A photo-like RGB PIL image of `scene`."""
  rng = draws.rng
  parts = (scene.parts() + _clutter(scene, draws))[:MAX_PARTS]
  labels = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(labels)
  for i, polygon in enumerate(pixel_polygons(parts, size), 1):
    draw.polygon(polygon, fill=i)
  n = len(parts) + 1
  textures = [""] + [p.texture for p in parts]
  rgb = np.array([(0.0, 0.0, 0.0)] + [p.rgb for p in parts], np.float32)
  jitter = rng.uniform(0.85, 1.15, (n, 1)) * (1.0 + 0.07 * rng.standard_normal((n, 3)))
  base = np.clip(rgb * jitter, 0, 255) / 255.0
  grad = rng.uniform(-0.25, 0.25, (n, 2))
  sky = np.array([t == "gradient" for t in textures])
  grad[sky, 0] = rng.uniform(0.3, 0.8, int(sky.sum()))
  grad[sky, 1] *= 0.4
  strength = np.array([TEXTURE_STRENGTH.get(t, 0.0) for t in textures]) * rng.uniform(0.6, 1.4, n)
  base, grad, strength = (a.astype(np.float32) for a in (base, grad, strength))
  ids = np.asarray(labels, np.intp)
  Y, X = _grid(size)
  present = np.flatnonzero(np.bincount(ids.ravel(), minlength=n))
  fields = _texture_fields({textures[i] for i in present if i}, size, draws)
  names = sorted(fields)
  lookup = np.array([names.index(t) if t in fields else 0 for t in textures])
  stack = np.stack([fields[name] for name in names]) if names else np.zeros((1, size, size), np.float32)
  rows, cols = _indices(size)
  texture = stack[lookup[ids], rows, cols]
  shading = 1.0 + grad[ids, 0] * (Y - 0.5) + grad[ids, 1] * (X - 0.5) + strength[ids] * texture
  image = base[ids] * shading[..., None]

  # Lighting: direction, exposure, colour cast, partial desaturation, vignette, noise.
  light = 1.0 + draws.uniform(-0.35, 0.35) * (X - 0.5) + draws.uniform(-0.35, 0.35) * (Y - 0.5)
  light *= 1.0 - draws.uniform(0.0, 0.4) * ((Y - 0.5) ** 2 + (X - 0.5) ** 2)
  cast = draws.uniform(0.6, 1.25) * (1.0 + 0.1 * rng.standard_normal(3))
  image *= (light[..., None] * cast).astype(np.float32)
  grey = image.mean(axis=2, keepdims=True)
  image = grey + (image - grey) * draws.uniform(0.6, 1.1)
  image += draws.uniform(0.01, 0.05) * rng.standard_normal((size, size, 3), np.float32)
  pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  radius = draws.uniform(0.25, 0.9) * size / 64.0
  return Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(radius))
