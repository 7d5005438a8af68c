"""A learnable micro dataset in the real on-disk format, written in well under a second.

Each category has its own colour (images) or direction (DSC vectors) plus noise,
so a tiny network learns it in a few dozen steps. Used by the training tests,
which need fast, fully controlled data rather than realistic scenes.
"""

import io
import os

import numpy as np
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.data import features, manifest, tfrecord_io

CATEGORIES = ("kitchen", "bedroom", "coast", "forest")
HELDOUT = ("forest",)
VECTOR_DIM = 16


def _png(rng, label, size):
  base = np.zeros((size, size, 3), np.float32)
  base[..., label % 3] = 0.8
  base[: size // 2, :, (label + 1) % 3] = 0.5 * (label // 3 + 1)
  image = np.clip(base + rng.normal(0, 0.15, base.shape), 0, 1)
  buffer = io.BytesIO()
  Image.fromarray((image * 255).astype(np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def _records(rng, modality, split, per_category, size, directions):
  for i in range(per_category * len(CATEGORIES)):
    label = i % len(CATEGORIES)
    category = CATEGORIES[label]
    kwargs = {}
    if mod_lib.is_image(modality):
      kwargs["image_png"] = _png(rng, label, size)
    else:
      vector = directions[label] + rng.normal(0, 0.3, VECTOR_DIM)
      kwargs["vector"] = (vector / np.linalg.norm(vector)).astype(np.float32)
      kwargs["text"] = f"a description of scene {i}."
    yield features.ExampleRecord(
        modality=modality, label=label, category=category,
        example_id=f"{modality}/{split}/{category}/{i:05d}", **kwargs)


def write_micro_dataset(data_dir, *, image_size=32, train_per_category=16,
                        val_per_category=4, seed=0):
  """Writes all five modalities (train and val) and manifest.json into `data_dir`."""
  rng = np.random.default_rng(seed)
  directions = rng.normal(0, 1, (len(CATEGORIES), VECTOR_DIM))
  mods = {}
  for modality in mod_lib.ALL_MODALITIES:
    mods[modality] = {}
    for split, per_category in (("train", train_per_category), ("val", val_per_category)):
      out_dir = os.path.join(data_dir, modality)
      records = list(_records(rng, modality, split, per_category, image_size, directions))
      names, count = tfrecord_io.write_sharded(records, out_dir, split, 2, VECTOR_DIM)
      label_counts = [sum(r.label == k for r in records) for k in range(len(CATEGORIES))]
      mods[modality][split] = {"count": count,
                               "shards": [f"{modality}/{n}" for n in names],
                               "label_counts": label_counts}
  manifest.write_manifest(data_dir, {
      "format_version": 1, "source": "synthcmp", "categories": list(CATEGORIES),
      "heldout_categories": list(HELDOUT), "seed": seed, "image_size": image_size,
      "sentence_encoder": {"name": "micro", "dim": VECTOR_DIM}, "vector_dim": VECTOR_DIM,
      "modalities": mods, "skipped": {},
      "build": {"wall_time_s": 0.0, "created": "1970-01-01T00:00:00", "argv": []}})
  return data_dir
