"""LDR: line drawing rendering of a scene: black wobbly strokes on white, no fill.

Outlines are split into strokes at sharp corners and after a stroke length; strokes are
cut into short segments whose ends are jittered (a hand's wobble). Some strokes are left
out and some are drawn twice, as people do when sketching. All geometry for one image is
computed in a few NumPy passes.
"""

import numpy as np
from PIL import Image, ImageDraw

SEGMENT = 0.07  # stroke segment length, as a fraction of the image side
STROKE_LENGTH = 0.3  # longest stroke before the pen is lifted
SHARP_CORNER = 0.6  # cosine of the turn above which a stroke ends
DROP_STROKE = 0.12  # chance to leave out one stroke
DROP_SMALL_PART = 0.3  # chance to leave out a part smaller than 3 pixels (a pane, a book)
DOUBLE_STROKE = 0.15  # chance to go over a stroke a second time


def _outlines(scene, size, draws):
  """Vertex arrays to trace: closed part outlines and the upper edges of bands."""
  outlines = []
  for part in scene.parts():
    if part.edge is not None:
      if len(part.edge):
        outlines.append(part.edge)
      continue
    pts = part.points
    extent = min(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])) * size
    if extent < 3 and draws.random() < DROP_SMALL_PART:
      continue
    outlines.append(np.concatenate([pts, pts[:1]]))
  return outlines


def _strokes(outlines, size, draws):
  """Wobbly pixel polylines [(x, y), ...] for every kept stroke, plus re-drawn ones."""
  rng = draws.rng
  counts = np.array([len(o) - 1 for o in outlines])
  vertices = np.concatenate(outlines)
  ends = np.cumsum([len(o) for o in outlines])
  keep_edge = np.ones(len(vertices), bool)
  keep_edge[ends - 1] = False  # the last vertex of an outline starts no edge
  a = vertices[:-1][keep_edge[:-1]]
  b = vertices[1:][keep_edge[:-1]]
  d = b - a
  length = np.hypot(d[:, 0], d[:, 1])
  last = np.cumsum(counts) - 1  # index of each outline's last edge
  breaks = np.zeros(len(a), bool)
  breaks[last] = True
  turn = np.einsum("ij,ij->i", d[:-1], d[1:]) / np.maximum(length[:-1] * length[1:], 1e-9)
  breaks[:-1] |= turn < SHARP_CORNER
  outline_of_edge = np.repeat(np.arange(len(counts)), counts)
  start_len = np.concatenate([[0.0], np.cumsum(length)])[np.cumsum(counts) - counts]
  cum = np.cumsum(length) - start_len[outline_of_edge]
  breaks |= np.floor(cum / STROKE_LENGTH) != np.floor((cum - length) / STROKE_LENGTH)
  stroke_of_edge = np.concatenate([[0], np.cumsum(breaks)[:-1]])
  n_strokes = int(stroke_of_edge[-1]) + 1
  last_edge = np.flatnonzero(breaks)

  steps = np.maximum(1, np.ceil(length / SEGMENT)).astype(int)
  edge_rep = np.repeat(np.arange(len(a)), steps)
  first = np.cumsum(steps) - steps
  t = (np.arange(edge_rep.size) - first[edge_rep]) / steps[edge_rep]
  dense = (a[edge_rep] + d[edge_rep] * t[:, None])[:, ::-1] * size
  tails = b[last_edge][:, ::-1] * size
  wobble = size / 64 * draws.uniform(0.2, 0.55)
  noisy = (dense + wobble * rng.standard_normal(dense.shape)).ravel().tolist()
  again = (dense + 2 * wobble * rng.standard_normal(dense.shape)).ravel().tolist()
  tails = (tails + wobble * rng.standard_normal(tails.shape)).tolist()
  per_stroke = np.bincount(stroke_of_edge, weights=steps, minlength=n_strokes).astype(int)
  offsets = np.concatenate([[0], np.cumsum(per_stroke)]).tolist()
  drop = rng.random(n_strokes) < DROP_STROKE
  double = rng.random(n_strokes) < DOUBLE_STROKE
  lines = []
  for s in range(n_strokes):
    if drop[s]:
      continue
    lo, hi = 2 * offsets[s], 2 * offsets[s + 1]
    lines.append(noisy[lo:hi] + tails[s])
    if double[s]:
      lines.append(again[lo:hi] + tails[s])
  return lines


def render(scene, draws, size):
  """A line drawing RGB PIL image of `scene`."""
  image = Image.new("RGB", (size, size), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  width = max(1, int(round(size / 96 * draws.uniform(0.8, 1.8))))
  ink = draws.integer(0, 60)
  outlines = _outlines(scene, size, draws)
  if outlines:
    for line in _strokes(outlines, size, draws):
      draw.line(line, fill=(ink, ink, ink), width=width)
  return image
