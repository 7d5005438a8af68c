"""Sampling one scene instance of a category: background bands plus placed objects.

A scene is the single model that every renderer draws (and the description describes):
objects with names, colours, boxes and polygons in normalised image coordinates
(y, x in [0, 1], y down). It depends only on the grammar, the category and the draws.
"""

import dataclasses
import functools
from typing import List, Optional, Tuple

import numpy as np

BAND_POINTS = 7  # points of a band's wobbly lower edge
MIN_VISIBLE = 0.25  # objects less visible than this fraction of their box are dropped
MAX_ZOOM = 1.3  # pictures are framed anywhere between the whole scene and 1/1.3 of it


@dataclasses.dataclass
class ScenePart:
  points: np.ndarray  # (K, 2) float32, normalised (y, x)
  rgb: Tuple[float, float, float]  # 0..255
  texture: str
  edge: Optional[np.ndarray] = None  # bands: only their upper edge is a drawn line


@dataclasses.dataclass
class SceneObject:
  name: str
  color: str  # palette name of the instance colour
  box: Tuple[float, float, float, float]  # visible (clipped) ymin, xmin, ymax, xmax
  parts: List[ScenePart]
  stuff: bool
  uid: int
  words: Tuple[str, ...] = ()  # the object's synonyms
  support: Optional[int] = None  # uid of the object this one stands on or is within
  relation: Optional[str] = None  # "on" | "within"
  size: float = 1.0  # height relative to the middle of the object's prior (for "small"/"large")
  color_after: str = ""  # see ObjectType.color_after

  @property
  def center(self):
    y0, x0, y1, x1 = self.box
    return (y0 + y1) / 2, (x0 + x1) / 2


@dataclasses.dataclass
class Scene:
  category: str
  kind: str
  horizon: float
  objects: List[SceneObject]  # in drawing order: bands first, then things back to front

  def by_uid(self, uid):
    return next(o for o in self.objects if o.uid == uid)

  def parts(self):
    return [part for obj in self.objects for part in obj.parts]


@functools.lru_cache(maxsize=4096)
def shade(rgb, role):
  """The colour of a part role relative to the instance colour."""
  if role == "dark":
    return tuple(c * 0.6 for c in rgb)
  if role == "light":
    return tuple(c + (255.0 - c) * 0.5 for c in rgb)
  return tuple(float(c) for c in rgb)


def pixel_polygons(parts, size):
  """Each part's polygon as a flat [x0, y0, x1, y1, ...] pixel list (one NumPy pass)."""
  if not parts:
    return []
  flat = (np.concatenate([p.points for p in parts])[:, ::-1] * size).ravel().tolist()
  result, start = [], 0
  for part in parts:
    end = start + 2 * len(part.points)
    result.append(flat[start:end])
    start = end
  return result


def sample_scene(grammar, category_name, draws):
  """Samples one instance of `category_name`; all randomness comes from `draws`."""
  category = grammar.category(category_name)
  objects, horizon = _sample_bands(grammar, category, draws)
  things = []
  uid = len(objects)
  for entry in category.entries:
    if draws.random() >= entry.p:
      continue
    for _ in range(draws.integer(*entry.count)):
      placed = _place(grammar, entry, things, horizon, draws, uid)
      if placed is not None:
        things.append(placed)
        uid += 1
  objects.extend(thing for thing, _ in sorted(things, key=lambda t: t[1]))
  objects, horizon = _reframe(objects, horizon, draws)
  return Scene(category=category.name, kind=category.kind, horizon=horizon, objects=objects)


def _reframe(objects, horizon, draws):
  """Zooms into a random window, as framing varies between pictures of the same place.

  Objects that leave the frame are dropped (and stop supporting others).
  """
  zoom = draws.uniform(1.0, MAX_ZOOM)
  top = draws.uniform(0.0, 1.0 - 1.0 / zoom)
  left = draws.uniform(0.0, 1.0 - 1.0 / zoom)
  offset = np.array([top, left], np.float32)
  kept = []
  for obj in objects:
    y0, x0, y1, x1 = ((v - o) * zoom for v, o in zip(obj.box, (top, left, top, left)))
    box = (max(y0, 0.0), max(x0, 0.0), min(y1, 1.0), min(x1, 1.0))
    if box[2] - box[0] >= 0.01 and box[3] - box[1] >= 0.01:
      obj.box = box
      kept.append(obj)
  # One transform for all polygons and band edges, then views back into each part.
  parts = [part for obj in kept for part in obj.parts]
  edges = [part for part in parts if part.edge is not None and len(part.edge)]
  arrays = [part.points for part in parts] + [part.edge for part in edges]
  moved = (np.concatenate(arrays) - offset) * zoom
  start = 0
  for part in parts:
    part.points, start = moved[start:start + len(part.points)], start + len(part.points)
  for part in edges:
    part.edge, start = moved[start:start + len(part.edge)], start + len(part.edge)
  uids = {obj.uid for obj in kept}
  for obj in kept:
    if obj.support is not None and obj.support not in uids:
      obj.support, obj.relation = None, None
  return kept, (horizon - top) * zoom


def _sample_bands(grammar, category, draws):
  """Background bands top to bottom; a skipped band leaves its area to the next one."""
  bands = []
  top = np.zeros(BAND_POINTS, np.float32)
  xs = np.linspace(0.0, 1.0, BAND_POINTS, dtype=np.float32)
  horizon = None
  for i, layer in enumerate(category.layers):
    if layer.bottom is not None and layer.p < 1.0 and draws.random() >= layer.p:
      continue
    obj = grammar.objects[layer.object]
    if layer.bottom is None:
      bottom = np.ones(BAND_POINTS, np.float32)
    else:
      level = draws.uniform(*layer.bottom)
      bottom = level + layer.wobble * draws.rng.standard_normal(BAND_POINTS).astype(np.float32)
      bottom = np.clip(np.maximum(bottom, top + 0.01), 0.0, 1.0)
    if i == category.horizon_layer:
      horizon = float(bottom.mean())
    color = draws.choice(layer.colors or obj.colors)
    upper = np.stack([top, xs], 1)
    polygon = np.concatenate([[[top[0], -0.01]], upper, [[top[-1], 1.01], [bottom[-1], 1.01]],
                              np.stack([bottom, xs], 1)[::-1], [[bottom[0], -0.01]]])
    part = ScenePart(polygon.astype(np.float32), shade(grammar.palette[color], "main"),
                     layer.texture or obj.texture,
                     edge=upper if top.max() > 0 else np.zeros((0, 2), np.float32))
    box = (float(top.min()), 0.0, float(bottom.max()), 1.0)
    bands.append(SceneObject(obj.name, color, box, [part], stuff=True, uid=len(bands),
                             words=obj.synonyms))
    top = bottom
  if horizon is None:
    horizon = float(bands[0].box[2]) if len(bands) > 1 else 0.5
  return bands, horizon


def _place(grammar, entry, things, horizon, draws, uid):
  """Places one instance of `entry`; returns (SceneObject, draw order key) or None."""
  obj = grammar.objects[entry.object]
  prior = entry.prior
  h = draws.uniform(*prior.h)
  aspect = draws.uniform(*prior.aspect)
  mid_h = (prior.h[0] + prior.h[1]) / 2
  support_names = entry.on or entry.within
  supports = [t for t in things if t[0].name in support_names] if support_names else []
  support = draws.choice(supports)[0] if supports else None
  relation = None
  if support is not None and entry.on:
    relation = "on"
    sy0, sx0, sy1, sx1 = support.box
    sh, sw = sy1 - sy0, sx1 - sx0
    bottom = sy0 + draws.uniform(0.0, 0.06) * sh
    cx = draws.uniform(sx0 + 0.15 * sw, sx1 - 0.15 * sw)
  else:
    cx = None
    if support is not None:
      relation = "within"
      bottom, cx = _point_inside(support, draws)
    else:
      anchor, y = prior.anchor, draws.uniform(*prior.y)
      if anchor == "ground":
        h = max(1.0 - (horizon + y), 0.02)
        bottom = 1.0
      elif anchor == "horizon":
        bottom = horizon + y
      elif anchor == "top":
        bottom = y + h
      elif anchor == "center":
        bottom = y + h / 2
      else:
        bottom = y
    if obj.perspective and prior.anchor != "ground":
      depth = min(max((bottom - horizon) / max(1.0 - horizon, 1e-3), 0.0), 1.0)
      h *= 0.4 + 0.8 * depth
  w = h * aspect
  if cx is None:
    cx = _spread_x(prior.x, w, bottom, h, [t[0] for t in things if t[0].name == obj.name], draws)
  x0, y0 = cx - w / 2, bottom - h
  visible = (max(y0, 0.0), max(x0, 0.0), min(bottom, 1.0), min(x0 + w, 1.0))
  vis_h, vis_w = visible[2] - visible[0], visible[3] - visible[1]
  if vis_h < 0.01 or vis_w < 0.01 or vis_h * vis_w < MIN_VISIBLE * h * w:
    return None
  color = draws.choice(entry.colors)
  main = grammar.palette[color]
  mirror = draws.random() < 0.5
  scale = np.array([h, -w if mirror else w], np.float32)
  offset = np.array([y0, x0 + w if mirror else x0], np.float32)
  points = obj.points * scale + offset
  parts, start = [], 0
  for part, n in zip(obj.parts, obj.part_sizes):
    if part.colors:
      rgb = shade(grammar.palette[draws.choice(part.colors)], "main")
    elif part.color in grammar.palette:
      rgb = shade(grammar.palette[part.color], "main")
    else:
      rgb = shade(main, part.color)
    parts.append(ScenePart(points[start:start + n], rgb, obj.texture))
    start += n
  placed = SceneObject(
      name=obj.name, color=color, box=visible, parts=parts, stuff=False, uid=uid,
      words=obj.synonyms, support=support.uid if support is not None else None,
      relation=relation, size=h / mid_h if relation != "on" else 1.0, color_after=obj.color_after)
  if support is not None:
    base = next(key for thing, key in things if thing.uid == support.uid)
    key = base[:3] + (1, uid)
  else:
    key = (entry.layer, bottom, uid, 0, 0)
  return placed, key


def _spread_x(x_range, w, bottom, h, same, draws, tries=4):
  """A centre x in `x_range` that overlaps earlier instances of the same object little."""
  cx = draws.uniform(*x_range)
  for _ in range(tries):
    if all(_iou((bottom - h, cx - w / 2, bottom, cx + w / 2), o.box) < 0.2 for o in same):
      break
    cx = draws.uniform(*x_range)
  return cx


def _iou(a, b):
  iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iy * ix
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def _point_inside(support, draws, tries=12):
  """A random point (y, x) inside the support's largest part."""
  polygon = max(support.parts, key=lambda p: _area(p.points)).points.tolist()
  y0, x0, y1, x1 = support.box
  for _ in range(tries):
    y, x = draws.uniform(y0 + 0.2 * (y1 - y0), y1), draws.uniform(x0, x1)
    if _inside(polygon, y, x):
      return y, x
  return (y0 + y1) / 2 + 0.25 * (y1 - y0), (x0 + x1) / 2


def _area(points):
  y, x = points[:, 0], points[:, 1]
  return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _inside(polygon, y, x):
  """Even-odd ray casting test; `polygon` is a list of [y, x]."""
  inside = False
  qy, qx = polygon[-1]
  for py, px in polygon:
    if (py > y) != (qy > y) and x < (qx - px) * (y - py) / (qy - py) + px:
      inside = not inside
    qy, qx = py, px
  return inside
