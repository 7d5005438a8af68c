"""Search queries from the command line: a sketch, clip art, a word layout, a sentence or a photo.

A layout ("spatial text", the paper's proposed query interface) is written as
  "sky@0.5,0.1 tree@0.2,0.6 car@0.7,0.8"
one WORD@X,Y item per object, X and Y the word's centre in [0, 1] from the left and
from the top; "_" in a word stands for a space ("coffee_table@0.5,0.7"). Layouts are
drawn by the SynthCMP spatial-text renderer, the one that drew the SPT training data,
so a word the grammar never used is drawn all the same.
"""

import dataclasses
import io
import math
import os

from PIL import Image, UnidentifiedImageError

from cmp_tf import modalities as mod_lib
from cmp_tf.data import text_encoder

# Query kind (its flag name) -> the modality whose branch embeds it.
KINDS = {
    "sketch": mod_lib.LDR,
    "clipart": mod_lib.CLP,
    "spatial_text": mod_lib.SPT,
    "text": mod_lib.DSC,
    "photo": mod_lib.NAT,
}
DISPLAY_SIZE = 256


@dataclasses.dataclass(frozen=True)
class Query:
  """One query: its kind, the modality that embeds it, and its input for the model.

  encoded: image bytes (image kinds); text: the description (text). display: bytes
  of an image to show in the result sheet (None for text).
  """
  kind: str
  modality: str
  encoded: bytes = b""
  text: str = ""
  display: bytes | None = None
  summary: str = ""


def parse_layout(layout, flag="--spatial_text"):
  """[(word, x, y)] of a WORD@X,Y layout; a clear error naming `flag` and the item."""
  items = layout.split() if isinstance(layout, str) else []
  if not items:
    raise ValueError(f"{flag}: empty layout; expected items like \"sky@0.5,0.1 car@0.7,0.8\"")
  parsed = []
  for i, item in enumerate(items, start=1):
    where = f"{flag}: item {i} {item!r}"
    word, at, coords = item.rpartition("@")
    if not at:
      raise ValueError(f"{where}: expected WORD@X,Y (e.g. tree@0.2,0.6)")
    word = word.replace("_", " ").strip()
    if not word:
      raise ValueError(f"{where}: the word before '@' is empty")
    parts = coords.split(",")
    try:
      x, y = (float(p) for p in parts)
    except ValueError:
      raise ValueError(f"{where}: expected two numbers X,Y after '@', got {coords!r}") from None
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x, y)):
      raise ValueError(f"{where}: X and Y must lie in [0, 1] (fractions of the width and "
                       "height from the top left)")
    parsed.append((word, x, y))
  return parsed


def _read_image(path, flag):
  if not path or not os.path.isfile(path):
    raise ValueError(f"{flag}: no such file: {path!r}")
  with open(path, "rb") as f:
    encoded = f.read()
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      image.verify()
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise ValueError(f"{flag}: {path} is not a readable image ({e})") from None
  return encoded


def make_query(kind, value, image_size):
  """The Query of one command-line query flag (`kind` is its name without dashes)."""
  if kind not in KINDS:
    raise ValueError(f"unknown query kind {kind!r}; expected one of {', '.join(KINDS)}")
  flag = f"--{kind}"
  modality = KINDS[kind]
  if kind == "spatial_text":
    from cmp_tf.data.synthcmp import render_spatial_text

    items = parse_layout(value, flag)
    try:
      encoded = render_spatial_text(items, image_size)
      display = render_spatial_text(items, max(DISPLAY_SIZE, image_size))
    except ValueError as e:
      raise ValueError(f"{flag}: {e}") from None
    summary = " ".join(f"{w}@{x:g},{y:g}" for w, x, y in items)
    return Query(kind, modality, encoded=encoded, display=display, summary=summary)
  if kind == "text":
    text = value if isinstance(value, str) else ""
    if not text_encoder.split_sentences(text):
      raise ValueError(f"{flag}: the description has no sentence to embed (it is empty or "
                       "has no letter or digit)")
    return Query(kind, modality, text=text, summary=text)
  encoded = _read_image(value, flag)
  return Query(kind, modality, encoded=encoded, display=encoded, summary=value)
