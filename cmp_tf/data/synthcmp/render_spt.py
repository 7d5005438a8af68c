"""SPT: spatial text: object names written at the objects' places on a blank canvas.

The font size follows the object's size. The same drawing serves scenes (a synonym is
picked per object) and user layouts (`render_spatial_text`, e.g. "sky@0.5,0.1").
Word bitmaps are cached, so a word costs a paste once it has been rasterised.
"""

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

INK = (0, 0, 0)
DEFAULT_EXTENT = 0.3  # box side assumed for a word given only by its centre


def font_size(box, size):
  """Pixel font size for a word naming an object with box (ymin, xmin, ymax, xmax)."""
  h, w = max(box[2] - box[0], 0.0), max(box[3] - box[1], 0.0)
  lo, hi = max(6, int(0.07 * size)), max(8, int(0.17 * size))
  return int(min(hi, max(lo, round(0.5 * math.sqrt(h * w) * size))))


@functools.lru_cache(maxsize=64)
def _font(px):
  return ImageFont.load_default(size=px)


@functools.lru_cache(maxsize=8192)
def _word_mask(word, px):
  """An 'L' bitmap of `word` at `px` points, tightly cropped."""
  font = _font(px)
  left, top, right, bottom = font.getbbox(word)
  mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
  ImageDraw.Draw(mask).text((-left, -top), word, font=font, fill=255)
  return mask


def draw_words(image, words_and_boxes):
  """Writes each (word, box) centred on its box; words are shrunk to fit the image."""
  size = image.size[0]
  for word, box in words_and_boxes:
    px = font_size(box, size)
    mask = _word_mask(word, px)
    if mask.size[0] > 0.95 * size:
      px = max(3, int(px * 0.95 * size / mask.size[0]))
      mask = _word_mask(word, px)
    w, h = mask.size
    cy, cx = (box[0] + box[2]) / 2 * size, (box[1] + box[3]) / 2 * size
    left = int(round(min(max(cx - w / 2, 0), max(size - w, 0))))
    top = int(round(min(max(cy - h / 2, 0), max(size - h, 0))))
    image.paste(INK, (left, top), mask)
  return image


def render(scene, draws, size):
  """A spatial text RGB PIL image of `scene`: one synonym per object, at its box."""
  items = [(draws.choice(obj.words), obj.box) for obj in scene.objects]
  return draw_words(Image.new("RGB", (size, size), (255, 255, 255)), items)


def layout_items(words_and_boxes):
  """Validates a user layout: (word, (ymin, xmin, ymax, xmax)) or (word, x, y) centres."""
  items = []
  for i, item in enumerate(words_and_boxes):
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
      raise ValueError(f"layout item {i}: expected (word, box) or (word, x, y), got {item!r}")
    word = item[0]
    if not isinstance(word, str) or not word.strip():
      raise ValueError(f"layout item {i}: empty word")
    if len(item) == 3:
      x, y = float(item[1]), float(item[2])
      half = DEFAULT_EXTENT / 2
      box = (y - half, x - half, y + half, x + half)
      coords = (x, y)
    else:
      box = tuple(float(v) for v in item[1])
      if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"layout item {i}: box must be (ymin, xmin, ymax, xmax), got {item[1]!r}")
      coords = box
    if not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in coords):
      raise ValueError(f"layout item {i} ({word!r}): coordinates must lie in [0, 1]")
    items.append((word.strip(), box))
  return items
