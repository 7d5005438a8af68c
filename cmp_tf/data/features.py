"""The one record format of cmp_tf, used by the writer, the parser and the exporter.

Every modality is stored with the same keys, so one parser reads them all:

  modality        bytes   "nat" | "clp" | "spt" | "ldr" | "dsc"
  label           int64   index into the dataset's category list (manifest.json)
  category        bytes   category name, e.g. "kitchen"
  example_id      bytes   unique within the dataset, e.g. "nat/train/kitchen/000017"
  image/encoded   bytes   PNG (JPEG accepted when reading); empty for DSC
  text            bytes   UTF-8 description; empty for image modalities
  text/vector     float   averaged sentence vector (DSC only, `vector_dim` floats)
  objects/name    bytes*  ground-truth object names (synthetic data; analysis only)
  objects/bbox    float*  4 floats per object: ymin, xmin, ymax, xmax in [0, 1]

Ground-truth objects are never fed to a model during training.
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from cmp_tf import modalities as mod_lib

MODALITY = "modality"
LABEL = "label"
CATEGORY = "category"
EXAMPLE_ID = "example_id"
IMAGE = "image/encoded"
TEXT = "text"
VECTOR = "text/vector"
OBJECT_NAMES = "objects/name"
OBJECT_BOXES = "objects/bbox"


@dataclasses.dataclass
class ExampleRecord:
  """One example of any modality, in memory, before it becomes a tf.train.Example."""
  modality: str
  label: int
  category: str
  example_id: str
  image_png: bytes = b""
  text: str = ""
  vector: Optional[np.ndarray] = None
  object_names: Sequence[str] = ()
  object_boxes: Optional[np.ndarray] = None  # (N, 4) ymin, xmin, ymax, xmax

  def boxes(self):
    if self.object_boxes is None:
      return np.zeros((0, 4), np.float32)
    return np.asarray(self.object_boxes, np.float32).reshape(-1, 4)


def _bytes(values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def to_tf_example(record, vector_dim=None):
  """Serialisable tf.train.Example for `record`; checks it is well formed."""
  modality = mod_lib.parse_modality(record.modality, f"record {record.example_id}")
  if mod_lib.is_image(modality):
    if not record.image_png:
      raise ValueError(f"record {record.example_id}: image modality without image")
    vector = np.zeros((0,), np.float32)
  else:
    if not record.text.strip():
      raise ValueError(f"record {record.example_id}: empty description")
    if record.vector is None:
      raise ValueError(f"record {record.example_id}: description without vector")
    vector = np.asarray(record.vector, np.float32).reshape(-1)
    if vector_dim is not None and vector.shape[0] != vector_dim:
      raise ValueError(
          f"record {record.example_id}: vector has {vector.shape[0]} values, "
          f"expected {vector_dim}")
  boxes = record.boxes()
  if len(record.object_names) != boxes.shape[0]:
    raise ValueError(f"record {record.example_id}: {len(record.object_names)} "
                     f"object names but {boxes.shape[0]} boxes")
  feature = {
      MODALITY: _bytes([modality.encode()]),
      LABEL: _ints([int(record.label)]),
      CATEGORY: _bytes([record.category.encode("utf-8")]),
      EXAMPLE_ID: _bytes([record.example_id.encode("utf-8")]),
      IMAGE: _bytes([record.image_png]),
      TEXT: _bytes([record.text.encode("utf-8")]),
      VECTOR: _floats(vector.tolist()),
      OBJECT_NAMES: _bytes([n.encode("utf-8") for n in record.object_names]),
      OBJECT_BOXES: _floats(boxes.reshape(-1).tolist()),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def feature_spec(modality, vector_dim=None, with_objects=False):
  """`tf.io.parse_example` spec; DSC needs `vector_dim` for a dense vector."""
  spec = {
      MODALITY: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      CATEGORY: tf.io.FixedLenFeature([], tf.string),
      EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
  }
  if mod_lib.is_image(modality):
    spec[IMAGE] = tf.io.FixedLenFeature([], tf.string)
  else:
    if vector_dim is None:
      raise ValueError("feature_spec: DSC needs vector_dim")
    spec[TEXT] = tf.io.FixedLenFeature([], tf.string)
    spec[VECTOR] = tf.io.FixedLenFeature([vector_dim], tf.float32)
  if with_objects:
    spec[OBJECT_NAMES] = tf.io.VarLenFeature(tf.string)
    spec[OBJECT_BOXES] = tf.io.VarLenFeature(tf.float32)
  return spec


def full_feature_spec():
  """Spec that reads every key of any modality (variable-length vector)."""
  return {
      MODALITY: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      CATEGORY: tf.io.FixedLenFeature([], tf.string),
      EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
      IMAGE: tf.io.FixedLenFeature([], tf.string, default_value=b""),
      TEXT: tf.io.FixedLenFeature([], tf.string, default_value=b""),
      VECTOR: tf.io.VarLenFeature(tf.float32),
      OBJECT_NAMES: tf.io.VarLenFeature(tf.string),
      OBJECT_BOXES: tf.io.VarLenFeature(tf.float32),
  }


def from_tf_example(serialized):
  """Parses one serialized record back into an ExampleRecord (eager, for tools and tests)."""
  parsed = tf.io.parse_single_example(serialized, full_feature_spec())
  vector = tf.sparse.to_dense(parsed[VECTOR]).numpy()
  names = [n.decode("utf-8") for n in tf.sparse.to_dense(parsed[OBJECT_NAMES]).numpy()]
  boxes = tf.sparse.to_dense(parsed[OBJECT_BOXES]).numpy().reshape(-1, 4)
  modality = parsed[MODALITY].numpy().decode()
  return ExampleRecord(
      modality=modality,
      label=int(parsed[LABEL].numpy()),
      category=parsed[CATEGORY].numpy().decode("utf-8"),
      example_id=parsed[EXAMPLE_ID].numpy().decode("utf-8"),
      image_png=parsed[IMAGE].numpy(),
      text=parsed[TEXT].numpy().decode("utf-8"),
      vector=vector if vector.size else None,
      object_names=names,
      object_boxes=boxes)


def decode_image(encoded, image_size):
  """Encoded PNG/JPEG/GIF/BMP bytes (grey, RGB or RGBA) -> float32 [S, S, 3] in [0, 1].

  The single image preprocessing of cmp_tf: training input, evaluation and the
  exported serving signatures all call this, so they see identical pixels.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.ensure_shape(image, [None, None, 3])
  image = tf.image.convert_image_dtype(image, tf.float32)
  image = tf.image.resize(image, [image_size, image_size], antialias=True)
  image = tf.clip_by_value(image, 0.0, 1.0)
  return tf.ensure_shape(image, [image_size, image_size, 3])
