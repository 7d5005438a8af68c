"""Features of a trained network over a dataset split, and their .npz files.

Evaluation extracts, for every modality, the inference-mode outputs of the shared
representation (pool5, fc6, fc7) and the classifier logits, and saves each as
`<features_dir>/<output>/<modality>.npz` holding the arrays

  features     float32 [N, D]   the output for every example, in the split's record order
  labels       int64 [N]        the scene label of each example (index into the categories)
  example_ids  str [N]          the record's example_id

so that any metric can be recomputed from the files alone. An `index.json` beside
them records what they were computed from (weights digest, dataset fingerprint), so
an evaluation can reuse them only while they are current.
"""

import dataclasses
import json
import os

import numpy as np

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.layer_names import FEATURE_LAYERS, LOGITS

OUTPUTS = FEATURE_LAYERS + (LOGITS,)
INDEX_NAME = "index.json"
_ARRAYS = ("features", "labels", "example_ids")


@dataclasses.dataclass
class FeatureSet:
  """The outputs of one modality's examples: {output: [N, D]}, labels [N], example_ids [N]."""
  features: dict
  labels: np.ndarray
  example_ids: np.ndarray

  def __len__(self):
    return len(self.labels)

  def select(self, mask):
    """The examples where `mask` ([N] bool) is true."""
    return FeatureSet({k: v[mask] for k, v in self.features.items()}, self.labels[mask],
                      self.example_ids[mask])


def extract(model, data_dir, modality, *, split="val", outputs=OUTPUTS, branch=None,
            batch_size=128):
  """Runs `model`'s `branch` (default: `modality`'s own) over one split of `modality`.

  `branch` lets a network apply one branch to another modality's data, e.g. the NAT-only
  source network to clip art. Returns a FeatureSet in the split's record order.
  """
  from cmp_tf.data import input_pipeline
  from cmp_tf.models import cross_modal

  modality = mod_lib.parse_modality(modality, where="extract")
  branch = modality if branch is None else mod_lib.parse_modality(branch, where="branch")
  if mod_lib.is_image(modality) != mod_lib.is_image(branch):
    raise ValueError(f"branch {branch!r} cannot read {modality!r} inputs (image vs text)")
  unknown = [o for o in outputs if o not in OUTPUTS]
  if unknown:
    raise ValueError(f"outputs: unknown {unknown}; expected some of {OUTPUTS}")
  encoder = cross_modal.feature_model(model, branch)
  image_size = model.spec.image_size

  def outputs_of(x):
    # Eager: one trace per modality would cost more than it saves on a validation split.
    out = encoder(x, training=False)
    return {name: out[name] for name in outputs}

  ds = input_pipeline.modality_dataset(data_dir, modality, split, batch_size=batch_size,
                                       training=False, image_size=image_size, with_meta=True)
  chunks = {name: [] for name in outputs}
  labels, example_ids = [], []
  for x, y, meta in ds:
    for name, value in outputs_of(x).items():
      chunks[name].append(value.numpy().astype(np.float32))
    labels.append(y.numpy().astype(np.int64))
    example_ids.append(meta["example_id"].numpy())
  if not labels:
    raise ValueError(f"{data_dir}: the {split} split of {modality!r} has no examples")
  return FeatureSet({name: np.concatenate(v) for name, v in chunks.items()},
                    np.concatenate(labels),
                    np.array([e.decode() for e in np.concatenate(example_ids)]))


def npz_path(features_dir, output, modality):
  """`<features_dir>/<output>/<modality>.npz`."""
  return os.path.join(os.fspath(features_dir), output, f"{modality}.npz")


def save_npz(path, features, labels, example_ids):
  """Writes one output's arrays atomically (temp file in the same directory, then rename)."""
  features = np.asarray(features, dtype=np.float32)
  labels = np.asarray(labels, dtype=np.int64)
  example_ids = np.asarray(example_ids, dtype=str)
  if features.ndim != 2 or labels.shape != (len(features),) or example_ids.shape != labels.shape:
    raise ValueError(f"{path}: inconsistent shapes: features {features.shape}, labels "
                     f"{labels.shape}, example_ids {example_ids.shape}")
  with fileio.atomic_path(path) as tmp:
    np.savez(tmp, features=features, labels=labels, example_ids=example_ids)


def load_npz(path):
  """(features [N, D] float32, labels [N] int64, example_ids [N] str) of one .npz file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such feature file")
  with np.load(path, allow_pickle=False) as data:
    missing = [name for name in _ARRAYS if name not in data.files]
    if missing:
      raise ValueError(f"{path}: missing arrays {missing} (has {data.files})")
    return data["features"], data["labels"], data["example_ids"]


def save_sets(features_dir, sets):
  """Saves {modality: FeatureSet} as one .npz per (output, modality)."""
  for modality, feature_set in sets.items():
    for output, values in feature_set.features.items():
      save_npz(npz_path(features_dir, output, modality), values, feature_set.labels,
               feature_set.example_ids)


def load_sets(features_dir, modalities, outputs):
  """{modality: FeatureSet} read back from `save_sets`' files; example order is checked."""
  sets = {}
  for modality in modalities:
    features, labels, ids = {}, None, None
    for output in outputs:
      path = npz_path(features_dir, output, modality)
      values, out_labels, out_ids = load_npz(path)
      if labels is not None and (not np.array_equal(labels, out_labels)
                                 or not np.array_equal(ids, out_ids)):
        raise ValueError(f"{path}: its examples differ from those of the other outputs of "
                         f"{modality!r}")
      features[output], labels, ids = values, out_labels, out_ids
    sets[modality] = FeatureSet(features, labels, ids)
  return sets


def read_index(features_dir):
  """The index.json of a features directory, or None."""
  path = os.path.join(os.fspath(features_dir), INDEX_NAME)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_index(features_dir, index):
  """Writes index.json atomically; written after the .npz files it describes."""
  fileio.write_json_atomic(os.path.join(os.fspath(features_dir), INDEX_NAME), index)


def cached_sets(features_dir, index, modalities, outputs):
  """The saved sets when index.json matches `index` and covers them, else None."""
  saved = read_index(features_dir)
  if saved is None or {k: v for k, v in saved.items() if k not in ("modalities", "outputs")} != (
      {k: v for k, v in index.items() if k not in ("modalities", "outputs")}):
    return None
  if not set(modalities) <= set(saved.get("modalities", ())) or not set(outputs) <= set(
      saved.get("outputs", ())):
    return None
  try:
    return load_sets(features_dir, modalities, outputs)
  except (OSError, ValueError):
    return None
