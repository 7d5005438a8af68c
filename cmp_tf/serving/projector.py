"""The shared space in TensorBoard's Embedding Projector: validation examples of every modality.

`write_run_projector` (`python -m cmp_tf.projector`) writes, under the log dir: tensors.tsv (one L2-normalised fc7 vector per example,
the retrieval embedding), metadata.tsv (modality, category, id), sprite.png (a
thumbnail per example; descriptions are shown as text), projector_config.pbtxt,
and a small event file so TensorBoard lists the directory as a run.
`write_projector` takes any embeddings.
"""

import io
import math
import os

import numpy as np
from PIL import Image

from cmp_tf import fileio, finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders, grid

TENSORS_TSV = "tensors.tsv"
METADATA_TSV = "metadata.tsv"
SPRITE_PNG = "sprite.png"
PROJECTOR_DIR = os.path.join("logs", "projector")
MAX_SPRITE_SIDE = 8192  # TensorBoard's limit on the sprite image
DEFAULT_THUMB = 48


def _cell(value):
  return " ".join(str(value).split()) or "-"  # no tabs or newlines inside a TSV cell


def _tile(sprite, size):
  """A size x size RGB tile of an encoded image, a PIL image or (str) a text."""
  if isinstance(sprite, str):
    return grid.text_tile(sprite, max(size, 32)).resize((size, size))
  if isinstance(sprite, (bytes, bytearray)):
    with Image.open(io.BytesIO(sprite)) as image:
      return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
  return sprite.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def sprite_sheet(sprites, thumb=DEFAULT_THUMB):
  """(PIL sprite sheet, tile side): tiles row-major in a square grid within 8192 px."""
  per_side = max(1, math.ceil(math.sqrt(len(sprites))))
  size = max(1, min(thumb, MAX_SPRITE_SIDE // per_side))
  sheet = Image.new("RGB", (per_side * size, per_side * size), (255, 255, 255))
  for i, sprite in enumerate(sprites):
    sheet.paste(_tile(sprite, size), ((i % per_side) * size, (i // per_side) * size))
  return sheet, size


def write_projector(log_dir, embeddings, metadata, *, sprites=None, tensor_name="fc7",
                    thumb=DEFAULT_THUMB, description=""):
  """Writes one embedding for TensorBoard's projector into `log_dir`; returns the file paths.

  embeddings: [N, D] floats. metadata: {column: N values} (e.g. modality, category).
  sprites: None or N items, each encoded image bytes, a PIL image or a text (str).
  """
  import tensorflow as tf
  from google.protobuf import text_format
  from tensorboard.plugins import projector

  embeddings = np.asarray(embeddings, np.float32)
  if embeddings.ndim != 2 or not len(embeddings):
    raise ValueError(f"embeddings must be a non-empty [N, D] array, got {embeddings.shape}")
  count = len(embeddings)
  for column, values in metadata.items():
    if len(values) != count:
      raise ValueError(f"metadata column {column!r} has {len(values)} values for {count} points")
  if sprites is not None and len(sprites) != count:
    raise ValueError(f"{len(sprites)} sprites for {count} points")
  if not np.all(np.isfinite(embeddings)):
    raise ValueError("embeddings hold NaN or infinite values")
  os.makedirs(log_dir, exist_ok=True)
  out = {"tensors": os.path.join(log_dir, TENSORS_TSV),
         "metadata": os.path.join(log_dir, METADATA_TSV)}
  rows = ("\t".join(f"{v:.6g}" for v in row) for row in embeddings)
  fileio.write_bytes_atomic(out["tensors"], ("\n".join(rows) + "\n").encode())
  columns = list(metadata)
  lines = ["\t".join(columns)] + ["\t".join(_cell(metadata[c][i]) for c in columns)
                                  for i in range(count)]
  fileio.write_bytes_atomic(out["metadata"], ("\n".join(lines) + "\n").encode("utf-8"))

  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = tensor_name
  embedding.tensor_path = TENSORS_TSV
  embedding.tensor_shape.extend(embeddings.shape)
  embedding.metadata_path = METADATA_TSV
  if sprites is not None:
    sheet, size = sprite_sheet(sprites, thumb)
    out["sprite"] = os.path.join(log_dir, SPRITE_PNG)
    fileio.write_bytes_atomic(out["sprite"], grid.png_bytes(sheet))
    embedding.sprite.image_path = SPRITE_PNG
    embedding.sprite.single_image_dim.extend([size, size])
  out["config"] = os.path.join(log_dir, "projector_config.pbtxt")
  fileio.write_bytes_atomic(out["config"], text_format.MessageToString(config).encode())
  # An event file makes the directory a run that `tensorboard --logdir <parent>` lists.
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default():
    tf.summary.text("projector", description or f"{count} points of {tensor_name}", step=0)
  writer.close()
  return out


def _balanced(records, limit):
  """Up to `limit` records taken round-robin over categories (in record order within each)."""
  by_category = {}
  for record in records:
    by_category.setdefault(record.category, []).append(record)
  chosen, depth = [], 0
  while len(chosen) < limit and any(depth < len(v) for v in by_category.values()):
    for category in sorted(by_category):
      if depth < len(by_category[category]) and len(chosen) < limit:
        chosen.append(by_category[category][depth])
    depth += 1
  return chosen


def write_run_projector(run_dir, log_dir=None, *, per_modality=100, split="val", data_dir=None,
                        backend=embedders.KERAS, thumb=DEFAULT_THUMB):
  """Embeds up to `per_modality` examples of each modality's `split` (balanced over categories)
  with the run's model and writes them for the projector; returns write_projector's paths.

  """
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.data import tfrecord_io

  if per_modality < 1:
    raise ValueError(f"--per_modality must be >= 1, got {per_modality}")
  info = finished_run.load_run(run_dir, data_dir=data_dir)
  log_dir = log_dir or os.path.join(info.run_dir, PROJECTOR_DIR)
  embedder, _ = embedders.make_embedder(info, info.modalities, backend)
  vectors, metadata, sprites = [], {"modality": [], "category": [], "id": []}, []
  for modality in info.modalities:
    paths = manifest_lib.shard_paths(info.manifest, info.data_dir, modality, split)
    records = _balanced(tfrecord_io.read_records(paths), per_modality)
    if mod_lib.is_image(modality):
      outputs = embedder.images(modality, [r.image_png for r in records])
      sprites += [r.image_png for r in records]
    else:
      outputs = embedder.vectors(np.stack([r.vector for r in records]))
      sprites += [r.text for r in records]
    vectors.append(outputs["embedding"])
    metadata["modality"] += [modality.upper()] * len(records)
    metadata["category"] += [r.category for r in records]
    metadata["id"] += [r.example_id for r in records]
  description = (f"L2-normalised fc7 of {len(metadata['id'])} {split} examples "
                 f"({', '.join(m.upper() for m in info.modalities)}) of {info.run_dir}")
  return write_projector(log_dir, np.concatenate(vectors), metadata, sprites=sprites,
                         tensor_name="fc7_normalised", thumb=thumb, description=description)
