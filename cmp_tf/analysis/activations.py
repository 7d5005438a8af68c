"""Per-example activations of a trained run over each modality's validation split.

Every analysis (modality invariance, unit alignment, unit visualisations) starts from
the same arrays, computed once here in inference mode (no dropout, no priors) with
the run's own feature model and the training/evaluation image preprocessing:

  run = finished_run.load_run("runs/c")              # a finished run of cmp_tf.train
  acts = run_activations(run, max_examples=1000, keep_inputs=True)
  acts["nat"].pool5_maps    # float32 [N, h, w, c]
  acts["nat"].units("fc7")  # float32 [N, 512]

A pool5 *unit* is a channel: its activation for an example is the spatial maximum of
its map (`pool5`, [N, c]); fc6/fc7 units are their neurons. DSC has no image, but its
pool5 is its projection reshaped to the same [h, w, c], so it has maps as well.

Examples are the validation split in record order, or, with `max_examples`, a random
subset (drawn with `seed`) kept in record order.
"""

import dataclasses

import numpy as np

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.layer_names import FEATURE_LAYERS

LAYERS = UNIT_LAYERS = FEATURE_LAYERS
SPLIT = "val"


@dataclasses.dataclass
class Activations:
  """One modality's validation examples as seen by a run's network.

  Attributes:
    modality: "nat", "clp", "spt", "ldr" or "dsc".
    pool5_maps: float32 [N, h, w, c], pool5 before flattening.
    pool5: float32 [N, c], the spatial maximum of each channel (one value per unit).
    fc6: float32 [N, F].
    fc7: float32 [N, F].
    labels: int64 [N], indices into the dataset's categories.
    categories: str [N], category names.
    example_ids: str [N], the records' example_id.
    object_names: N tuples of ground-truth object names (for DSC: the objects the
      description mentions); empty tuples when the data has none (CMPlaces).
    object_boxes: N float32 arrays [K, 4] (ymin, xmin, ymax, xmax in [0, 1]).
    texts: N strings, the DSC descriptions ("" for image modalities).
    inputs: None, or (keep_inputs=True) what the network was fed: float32
      [N, S, S, 3] images in [0, 1], or float32 [N, D] DSC sentence vectors.
  """
  modality: str
  pool5_maps: np.ndarray
  pool5: np.ndarray
  fc6: np.ndarray
  fc7: np.ndarray
  labels: np.ndarray
  categories: np.ndarray
  example_ids: np.ndarray
  object_names: list
  object_boxes: list
  texts: list
  inputs: np.ndarray | None = None

  def __len__(self):
    return len(self.labels)

  def features(self, layer):
    """float32 [N, D]: the representation retrieval uses ("pool5" is the flattened maps)."""
    _check_layer(layer, LAYERS)
    if layer == "pool5":
      return self.pool5_maps.reshape(len(self), -1)
    return getattr(self, layer)

  def units(self, layer):
    """float32 [N, U]: one activation per unit ("pool5": channel maxima)."""
    _check_layer(layer, UNIT_LAYERS)
    return getattr(self, layer)

  @property
  def has_objects(self):
    """Whether any example carries ground-truth objects."""
    return any(len(names) for names in self.object_names)


def _check_layer(layer, allowed):
  if layer not in allowed:
    raise ValueError(f"layer: expected one of {', '.join(allowed)}, got {layer!r}")


def as_run(run):
  """`run` if it is a FinishedRun, else the finished run in the directory `run`."""
  if isinstance(run, finished_run.FinishedRun):
    return run
  return finished_run.load_run(run)


def modality_activations(model, data_dir, modality, *, max_examples=None, seed=0,
                         batch_size=128, keep_inputs=False):
  """The Activations of `model`'s `modality` branch over that modality's validation split.

  Args:
    model: a CrossModalModel with a `modality` branch.
    data_dir: a built dataset directory.
    modality: the modality (its own branch reads it).
    max_examples: None for every example, else a random subset of at most this many
      (drawn with `seed`, kept in record order).
    seed: the subset's seed.
    batch_size: examples per forward pass.
    keep_inputs: keep the network's inputs (images or sentence vectors) in `inputs`.
  """
  from cmp_tf.data import input_pipeline
  from cmp_tf.models import cross_modal

  modality = mod_lib.parse_modality(modality, where="modality_activations")
  if max_examples is not None and (int(max_examples) != max_examples or max_examples < 1):
    raise ValueError(f"max_examples: expected a positive integer, got {max_examples!r}")
  encoder = cross_modal.feature_model(model, modality)
  pool5_shape = tuple(model.spec.pool5_shape)
  ds = input_pipeline.modality_dataset(data_dir, modality, SPLIT, batch_size=batch_size,
                                       training=False, image_size=model.spec.image_size,
                                       with_meta=True, max_examples=max_examples, seed=seed)
  chunks = {layer: [] for layer in LAYERS}
  labels, categories, ids, names, boxes, inputs = [], [], [], [], [], []
  for x, y, meta in ds:
    out = encoder(x, training=False)
    for layer in LAYERS:
      chunks[layer].append(out[layer].numpy().astype(np.float32))
    if keep_inputs:
      inputs.append(x.numpy().astype(np.float32))
    labels.append(y.numpy().astype(np.int64))
    categories.extend(c.decode("utf-8") for c in meta["category"].numpy())
    ids.extend(e.decode("utf-8") for e in meta["example_id"].numpy())
    names.extend(tuple(n.decode("utf-8") for n in row) for row in
                 meta["object_names"].to_list())
    boxes.extend(np.asarray(row, np.float32).reshape(-1, 4) for row in
                 meta["object_boxes"].to_list())
  if not labels:
    raise ValueError(f"{data_dir}: the {SPLIT} split of {modality!r} has no examples")
  maps = np.concatenate(chunks["pool5"]).reshape((-1,) + pool5_shape)
  texts = (_descriptions(data_dir, ids) if modality == mod_lib.DSC else [""] * len(ids))
  return Activations(
      modality=modality, pool5_maps=maps, pool5=maps.max(axis=(1, 2)),
      fc6=np.concatenate(chunks["fc6"]), fc7=np.concatenate(chunks["fc7"]),
      labels=np.concatenate(labels), categories=np.array(categories),
      example_ids=np.array(ids), object_names=names, object_boxes=boxes, texts=texts,
      inputs=np.concatenate(inputs) if keep_inputs else None)


def _descriptions(data_dir, example_ids):
  """The DSC descriptions of `example_ids`, read from the validation shards."""
  import tensorflow as tf

  from cmp_tf.data import features
  from cmp_tf.data import manifest as manifest_lib

  manifest = manifest_lib.read_manifest(data_dir, check_files=False)
  paths = manifest_lib.shard_paths(manifest, data_dir, mod_lib.DSC, SPLIT)
  spec = {features.EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
          features.TEXT: tf.io.FixedLenFeature([], tf.string, default_value=b"")}
  texts = {}
  ds = tf.data.TFRecordDataset(paths).batch(512).map(lambda s: tf.io.parse_example(s, spec))
  for batch in ds.as_numpy_iterator():
    for example_id, text in zip(batch[features.EXAMPLE_ID], batch[features.TEXT]):
      texts[example_id.decode("utf-8")] = text.decode("utf-8")
  return [texts.get(example_id, "") for example_id in example_ids]


def run_activations(run, *, modalities=None, max_examples=1000, seed=0, batch_size=128,
                    keep_inputs=False, progress=False):
  """{modality: Activations} of a FinishedRun (or a run directory) for each of its branches.

  Args:
    run: a FinishedRun (cmp_tf.finished_run), or a run directory.
    modalities: which modalities (default: every branch of the network).
    max_examples: at most this many validation examples per modality (None: all).
    seed: the subsets' seed (each modality draws its own subset from it).
    batch_size: examples per forward pass.
    keep_inputs: keep the network's inputs (needed to draw examples).
    progress: print one line per modality.
  """
  import time

  run = as_run(run)
  modalities = (run.modalities if modalities is None
                else list(mod_lib.parse_modalities(modalities, "modalities")))
  missing = [m for m in modalities if m not in run.spec.modalities]
  if missing:
    raise ValueError(f"modalities: the network of {run.run_dir} has no branch for "
                     f"{', '.join(missing)}")
  acts = {}
  for modality in modalities:
    started = time.perf_counter()
    acts[modality] = modality_activations(
        run.model, run.data_dir, modality, max_examples=max_examples,
        seed=seed * len(mod_lib.ALL_MODALITIES) + mod_lib.ALL_MODALITIES.index(modality),
        batch_size=batch_size, keep_inputs=keep_inputs)
    if progress:
      print(f"activations of {modality.upper()}: {len(acts[modality])} examples in "
            f"{time.perf_counter() - started:.1f} s", flush=True)
  return acts
