"""Rendering SynthCMP examples into records, deterministically from a seed.

Each example gets its own RNG seeded from (seed, modality, split, category, index), so
examples are independent of generation order and of one another, and each modality
samples its own scene instances (the data are unpaired, as in CMPlaces).
"""

import io
import zlib

import numpy as np
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.data.features import ExampleRecord
from cmp_tf.data.synthcmp import describe, render_clp, render_ldr, render_nat, render_spt, scene
from cmp_tf.data.synthcmp.draws import Draws

RENDERERS = {
    mod_lib.NAT: render_nat.render,
    mod_lib.CLP: render_clp.render,
    mod_lib.LDR: render_ldr.render,
    mod_lib.SPT: render_spt.render,
}
MIN_IMAGE_SIZE = 8
PNG_COMPRESS_LEVEL = 6


def _stable_int(text):
  return zlib.crc32(text.encode("utf-8"))


def example_rng(seed, modality, split, category, index):
  """The RNG of one example; string parts are hashed with crc32 (stable across runs)."""
  entropy = [int(seed), _stable_int(modality), _stable_int(split), _stable_int(category), int(index)]
  return np.random.default_rng(np.random.SeedSequence(entropy))


def encode_png(image):
  """PNG bytes of a PIL image; fixed options and no metadata, so bytes depend only on pixels."""
  buffer = io.BytesIO()
  image.convert("RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
  return buffer.getvalue()


def _check(grammar, modality, split, category, index, seed, image_size):
  modality = mod_lib.parse_modality(modality)
  if split not in mod_lib.SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  grammar.category(category)
  if int(index) < 0 or int(seed) < 0:
    raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
  if mod_lib.is_image(modality) and int(image_size) < MIN_IMAGE_SIZE:
    raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
  return modality


def render_record(grammar, modality, split, category, label, index, seed, image_size):
  """One SynthCMP example as an ExampleRecord (DSC: text only; the build adds the vector).

  Object names/boxes are the ground truth of the rendered scene (for DSC: of the objects
  the description mentions), for analysis only.
  """
  modality = _check(grammar, modality, split, category, index, seed, image_size)
  draws = Draws(example_rng(seed, modality, split, category, index))
  instance = scene.sample_scene(grammar, category, draws)
  example_id = f"{modality}/{split}/{category}/{int(index):05d}"
  record = ExampleRecord(modality=modality, label=int(label), category=category,
                         example_id=example_id)
  if mod_lib.is_image(modality):
    image = RENDERERS[modality](instance, draws, int(image_size))
    record.image_png = encode_png(image)
    objects = instance.objects
  else:
    record.text, objects = describe.describe(instance, grammar, draws)
  record.object_names = [o.name for o in objects]
  boxes = np.array([o.box for o in objects], np.float32).reshape(-1, 4)
  record.object_boxes = np.clip(boxes, 0.0, 1.0)
  return record


def generate_records(grammar, modality, split, categories, n_per_category, seed, image_size):
  """Yields n_per_category records per category, category-major; label = index in `categories`."""
  categories = list(categories)
  for name in categories:
    grammar.category(name)
  if len(set(categories)) != len(categories):
    raise ValueError(f"a category is listed twice in {categories}")
  for label, name in enumerate(categories):
    for index in range(int(n_per_category)):
      yield render_record(grammar, modality, split, name, label, index, seed, image_size)


def render_spatial_text(words_and_boxes, image_size):
  """PNG bytes of a user layout: (word, (ymin, xmin, ymax, xmax)) or (word, x, y) items."""
  if int(image_size) < MIN_IMAGE_SIZE:
    raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
  items = render_spt.layout_items(words_and_boxes)
  image = Image.new("RGB", (int(image_size),) * 2, (255, 255, 255))
  return encode_png(render_spt.draw_words(image, items))
