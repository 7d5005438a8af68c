"""What single units of the shared representation respond to (paper Figures 2 and 6).

For a seeded random subset of a layer's units (the paper's human study also showed
random units), each visual modality's top-k validation examples by the unit's
activation, and for DSC the most characteristic words of the top-k paragraphs:

  pool5   a unit is a channel; its activation is the spatial maximum of its map
          (as `cmp_tf.analysis.activations` defines it). Each image is drawn
          under its own soft mask: the channel's map, upsampled bilinearly to the
          image and divided by its maximum, so pixels fade to dark where the unit
          is silent (after Zhou et al., the paper's [47]).
  fc6/fc7 a unit is a neuron; no spatial map, so the images are drawn plain.
  DSC     tf-idf (scikit-learn's TfidfVectorizer, English stop words removed)
          fitted on every DSC validation paragraph; a unit's words are the terms
          with the highest mean tf-idf over its top-k paragraphs.

Units are drawn among the *live* ones: those some NAT validation example activates
(> 0); a dead unit has no top examples to show. Ties in activation keep record order.
For a network whose fc6/fc7 are per modality (BL-Individual, method B), unit i of
each modality's fc7 is a different neuron that started from the same source neuron.

Output under `out_dir`: units/<layer>/unit_<index>.png (rows NAT, CLP, SPT, LDR,
then the DSC words) and units/units.json.
"""

import os
import time

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.fileio import write_json_atomic, write_png_atomic
from cmp_tf.layer_names import FEATURE_LAYERS

DEFAULT_LAYERS = ("pool5", "fc7")
UNIT_LAYERS = FEATURE_LAYERS
SPATIAL_LAYER = "pool5"
DEFAULT_NUM_UNITS = 16
DEFAULT_TOP_K = 5
DEFAULT_NUM_WORDS = 8
UNITS_DIR = "units"
UNITS_JSON = "units.json"
# Brightness of a pixel where the unit is silent: dark enough to read the mask,
# light enough to still see the scene.
MASK_FLOOR = 0.15
_LABEL_WIDTH = 48
_CAPTION_HEIGHT = 14
_TITLE_HEIGHT = 22
_PAD = 4
_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)


def choose_units(nat_units, num_units, seed):
  """Sorted indices of `num_units` units drawn at random (seeded) among the live ones.

  Args:
    nat_units: float [N, U], the NAT validation examples' unit activations.
    num_units: how many; all live units when fewer are live.
    seed: the draw's seed.
  """
  nat_units = np.asarray(nat_units)
  if nat_units.ndim != 2:
    raise ValueError(f"nat_units: expected [N, U], got shape {nat_units.shape}")
  if int(num_units) != num_units or num_units < 1:
    raise ValueError(f"num_units: expected a positive integer, got {num_units!r}")
  live = np.flatnonzero((nat_units > 0).any(axis=0))
  if len(live) <= num_units:
    return live
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(live, size=int(num_units), replace=False))


def top_k_indices(values, k):
  """Indices of the k largest `values` ([N]), largest first; ties keep index order."""
  values = np.asarray(values)
  if values.ndim != 1:
    raise ValueError(f"values: expected [N], got shape {values.shape}")
  if int(k) != k or k < 1:
    raise ValueError(f"k: expected a positive integer, got {k!r}")
  return np.argsort(-values, kind="stable")[:int(k)]


def fit_tfidf(texts):
  """(vectorizer, [N, V] tf-idf matrix) of the DSC paragraphs; (None, None) without words."""
  from sklearn.feature_extraction.text import TfidfVectorizer
  vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z]{2,}\b")
  try:
    matrix = vectorizer.fit_transform(list(texts))
  except ValueError:  # every paragraph empty or only stop words
    return None, None
  return vectorizer, matrix


def characteristic_words(vectorizer, matrix, indices, num_words=DEFAULT_NUM_WORDS):
  """[(word, mean tf-idf)] of the paragraphs `indices`, best first (ties alphabetical)."""
  if vectorizer is None or len(indices) == 0:
    return []
  mean = np.asarray(matrix[np.asarray(indices)].mean(axis=0)).ravel()
  vocabulary = vectorizer.get_feature_names_out()
  order = sorted(np.flatnonzero(mean > 0), key=lambda i: (-mean[i], vocabulary[i]))
  return [(str(vocabulary[i]), round(float(mean[i]), 4)) for i in order[:num_words]]


def upsample_map(unit_map, size):
  """float32 [size, size]: a unit's [h, w] map resized bilinearly (pixel centres aligned)."""
  from PIL import Image
  unit_map = np.asarray(unit_map, np.float32)
  return np.asarray(Image.fromarray(unit_map, mode="F").resize((size, size),
                                                               Image.Resampling.BILINEAR))


def masked_image(image, unit_map=None):
  """uint8 [S, S, 3] of a float [S, S, 3] image in [0, 1], dimmed where `unit_map` is low.

  The map ([h, w]) is upsampled to S and divided by its own maximum; a map that is
  zero everywhere leaves the image at MASK_FLOOR brightness.
  """
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  if unit_map is not None:
    mask = upsample_map(unit_map, image.shape[0])
    peak = float(mask.max())
    mask = np.clip(mask / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(mask)
    image = image * (MASK_FLOOR + (1.0 - MASK_FLOOR) * mask)[..., None]
  return np.round(image * 255.0).astype(np.uint8)


def font(size):
  from PIL import ImageFont
  return ImageFont.load_default(size=size)


def _cell_size(image_size):
  """Drawn size of one example: small images are doubled so the masks can be read."""
  return image_size * 2 if image_size <= 64 else image_size


def wrap(text, width_chars):
  """`text` broken into lines of at most `width_chars` characters, at spaces."""
  lines, line = [], ""
  for word in text.split():
    if line and len(line) + 1 + len(word) > width_chars:
      lines.append(line)
      line = word
    else:
      line = f"{line} {word}" if line else word
  if line:
    lines.append(line)
  return lines


def unit_grid(title, rows, *, top_k, image_size, dsc_words=None):
  """A PIL image: one row per visual modality of (uint8 image, caption) cells, then words.

  Args:
    title: the line on top.
    rows: [(modality label, [(uint8 [S, S, 3], caption)])], cells in rank order.
    top_k: cells per row (shorter rows leave blanks).
    image_size: S.
    dsc_words: None (no DSC row), or the words to write in a DSC row.
  """
  from PIL import Image, ImageDraw
  cell = _cell_size(image_size)
  width = _LABEL_WIDTH + top_k * (cell + _PAD) + _PAD
  text_font, small = font(13), font(10)
  word_lines = []
  if dsc_words is not None:
    word_lines = wrap(", ".join(dsc_words) or "(no words)", max(20, (width - _LABEL_WIDTH) // 7))
  row_height = cell + _CAPTION_HEIGHT + _PAD
  height = (_TITLE_HEIGHT + len(rows) * row_height + (len(word_lines) * 16 + _PAD
                                                      if word_lines else 0) + _PAD)
  canvas = Image.new("RGB", (width, height), _BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  draw.text((_PAD, 4), title, fill=_INK, font=text_font)
  y = _TITLE_HEIGHT
  for label, cells in rows:
    draw.text((_PAD, y + cell // 2 - 7), label, fill=_INK, font=text_font)
    for column, (pixels, caption) in enumerate(cells[:top_k]):
      x = _LABEL_WIDTH + column * (cell + _PAD)
      canvas.paste(Image.fromarray(pixels).resize((cell, cell), Image.Resampling.BILINEAR),
                   (x, y))
      draw.text((x, y + cell + 1), caption[:cell // 6], fill=_INK, font=small)
    y += row_height
  for line_index, line in enumerate(word_lines):
    draw.text((_LABEL_WIDTH if line_index else _PAD, y + line_index * 16),
              line if line_index else f"DSC   {line}", fill=_INK, font=text_font)
  return canvas


def _check_activations(activations, layers):
  visual = [m for m in mod_lib.IMAGE_MODALITIES if m in activations]
  if mod_lib.NAT not in activations:
    raise ValueError("activations: NAT is needed (units are chosen among those NAT activates)")
  for modality in visual:
    acts = activations[modality]
    if acts.inputs is None:
      raise ValueError(f"activations[{modality!r}]: no images to draw; extract them with "
                       "keep_inputs=True")
  for modality, acts in activations.items():
    for layer in layers:
      width = acts.units(layer).shape[1]
      if width != activations[mod_lib.NAT].units(layer).shape[1]:
        raise ValueError(f"activations[{modality!r}]: {layer} has {width} units, NAT has "
                         f"{activations[mod_lib.NAT].units(layer).shape[1]}")
  return visual


def _check_layers(layers):
  layers = tuple(layers)
  unknown = [layer for layer in layers if layer not in UNIT_LAYERS]
  if not layers or unknown:
    raise ValueError(f"layers: expected some of {', '.join(UNIT_LAYERS)}, got "
                     f"{', '.join(map(str, layers)) or 'none'}")
  return tuple(dict.fromkeys(layers))


def _top_examples(acts, unit_values, order):
  return [{"example_id": str(acts.example_ids[i]), "category": str(acts.categories[i]),
           "activation": round(float(unit_values[i]), 4)} for i in order]


def write_unit_visualisations(run_dir, out_dir, *, layers=DEFAULT_LAYERS,
                              num_units=DEFAULT_NUM_UNITS, top_k=DEFAULT_TOP_K, seed=0,
                              activations=None, num_words=DEFAULT_NUM_WORDS):
  """Draws the top-k examples of some units of each layer; writes PNGs and units.json.

  Args:
    run_dir: a finished run of cmp_tf.train (or its FinishedRun, to load it once).
    out_dir: where units/ is written (e.g. RUN/analysis).
    layers: some of pool5, fc6, fc7.
    num_units: units per layer (a seeded random subset of the live units).
    top_k: examples per modality (and DSC paragraphs for the words).
    seed: the seed of the unit subset.
    activations: {modality: cmp_tf.analysis.activations.Activations} already
      extracted with keep_inputs=True; default: extracted here from every
      validation example.
    num_words: DSC words per unit.

  Returns:
    What was written (also saved as units/units.json): {"layers": {layer:
    {"units": [{"unit", "png" (relative to out_dir), "top": {modality: [{example_id,
    category, activation}]}, "dsc_words": [[word, score]]}], ...}}, ...}.
  """
  started = time.perf_counter()
  layers = _check_layers(layers)
  if int(top_k) != top_k or top_k < 1:
    raise ValueError(f"top_k: expected a positive integer, got {top_k!r}")
  if int(num_units) != num_units or num_units < 1:
    raise ValueError(f"num_units: expected a positive integer, got {num_units!r}")
  from cmp_tf.analysis import activations as activations_lib
  if activations is not None:
    _check_activations(activations, layers)
  run = activations_lib.as_run(run_dir)
  if activations is None:
    activations = activations_lib.run_activations(run, max_examples=None, seed=seed,
                                                  keep_inputs=True)
  visual = _check_activations(activations, layers)
  dsc = activations.get(mod_lib.DSC)
  vectorizer, matrix = fit_tfidf(dsc.texts) if dsc is not None else (None, None)
  image_size = activations[mod_lib.NAT].inputs.shape[1]
  out_dir = os.fspath(out_dir)
  result = {
      "run_dir": run.run_dir, "method_name": run.name, "weights_digest": run.weights_digest,
      "selection": f"seeded random subset (seed {seed}) of the units that at least one NAT "
                   "validation example activates",
      "activation": "pool5: spatial maximum of the channel's map; fc6/fc7: the neuron",
      "mask": (f"pool5 only: the channel's map, bilinearly upsampled, divided by its maximum; "
               f"pixels scaled by {MASK_FLOOR} + {1 - MASK_FLOOR} * mask"),
      "dsc_words": "highest mean tf-idf (English stop words removed) over the unit's top-k "
                   "DSC validation paragraphs, fitted on all DSC validation paragraphs",
      "shared_upper": bool(run.spec.share_upper), "top_k": int(top_k),
      "examples": {m: len(a) for m, a in activations.items()}, "layers": {},
  }
  for layer in layers:
    units = choose_units(activations[mod_lib.NAT].units(layer), num_units, seed)
    entries = []
    for unit in units:
      entry = {"unit": int(unit), "png": f"{UNITS_DIR}/{layer}/unit_{unit:04d}.png", "top": {}}
      rows = []
      for modality in visual:
        acts = activations[modality]
        values = acts.units(layer)[:, unit]
        order = top_k_indices(values, top_k)
        entry["top"][modality] = _top_examples(acts, values, order)
        cells = [(masked_image(acts.inputs[i],
                               acts.pool5_maps[i, :, :, unit] if layer == SPATIAL_LAYER
                               else None),
                  f"{values[i]:.2f} {acts.categories[i]}") for i in order]
        rows.append((modality.upper(), cells))
      words = None
      if dsc is not None:
        values = dsc.units(layer)[:, unit]
        order = top_k_indices(values, top_k)
        entry["top"][mod_lib.DSC] = _top_examples(dsc, values, order)
        entry["dsc_words"] = [list(w) for w in characteristic_words(vectorizer, matrix, order,
                                                                     num_words)]
        words = [w for w, _ in entry["dsc_words"]]
      title = f"{run.name}: {layer} unit {unit}"
      write_png_atomic(os.path.join(out_dir, entry["png"]),
                       unit_grid(title, rows, top_k=int(top_k), image_size=image_size,
                                 dsc_words=words))
      entries.append(entry)
    result["layers"][layer] = {"num_units": int(activations[mod_lib.NAT].units(layer).shape[1]),
                               "num_live": int((activations[mod_lib.NAT].units(layer) > 0)
                                               .any(axis=0).sum()),
                               "units": entries}
  result["json"] = f"{UNITS_DIR}/{UNITS_JSON}"
  result["wall_time_s"] = round(time.perf_counter() - started, 2)
  write_json_atomic(os.path.join(out_dir, result["json"]), result)
  return result
