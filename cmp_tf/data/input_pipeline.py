"""tf.data input for training and evaluation, read from a built dataset directory.

The pipeline: shards interleaved (deterministic) -> parse in batches -> drop
excluded categories -> decode -> [cache] -> [shuffle, repeat] -> batch -> prefetch.

Images go through `features.decode_image`, the one preprocessing shared with
evaluation and serving. When the requested size is the stored size that
function is exactly the uint8 pixels scaled to [0, 1], so images are kept as
uint8 up to the batch (a quarter of the memory in the cache) and scaled after
batching; the values are identical.

Training datasets keep the decoded examples in memory when they fit a budget:
on a 2-core machine decoding PNGs every epoch would otherwise bound training.
The decoded arrays are kept per process (keyed by the shards' paths, sizes and
times), so a training dataset created again starts at once; epochs are then
index permutations gathered a batch at a time. Epoch e's permutation is a stateless
function of (seed, e), so the batch of training step s is a pure function of the
seed and s, and a stream started at `start_step` costs nothing to position.
"""

import collections
import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from cmp_tf import modalities as mod_lib
from cmp_tf.data import features
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_CACHE_BUDGET_BYTES = 2 << 30
DEFAULT_SHUFFLE_BUFFER = 20000
_PARSE_BATCH = 256
_MAX_ORDERED_CYCLE = 64  # up to this many shards are read back in exact write order
_TRAIN_CYCLE = 16


def count(data_dir, modality, split, exclude_categories=()):
  """Number of examples of one modality and split, without the excluded categories."""
  manifest = manifest_lib.read_manifest(data_dir, check_files=False)
  return _count(manifest, modality, split, manifest_lib.label_ids(manifest, exclude_categories))


def _count(manifest, modality, split, excluded_ids):
  entry = manifest_lib.split_entry(manifest, modality, split)
  if not excluded_ids:
    return entry["count"]
  if "label_counts" not in entry:
    raise DataError(f"the manifest has no label_counts for {modality}/{split}, needed to "
                    "leave categories out; rebuild the dataset")
  return entry["count"] - sum(entry["label_counts"][i] for i in excluded_ids)


def modality_dataset(data_dir, modality, split, *, batch_size, training, image_size=None,
                     exclude_categories=(), seed=0, start_step=0, input_context=None,
                     with_meta=False, drop_remainder=None, max_examples=None,
                     cache_budget_bytes=DEFAULT_CACHE_BUDGET_BYTES,
                     shuffle_buffer=DEFAULT_SHUFFLE_BUFFER):
  """Batches (x, label[, meta]) of one modality and split.

  x: float32 [B, S, S, 3] in [0, 1] for image modalities (S = `image_size`, by
  default the stored size), float32 [B, D] sentence vectors for DSC. label: int32 [B].
  meta (with_meta=True): {"example_id": [B] string, "category": [B] string,
  "object_names": ragged [B, None] string, "object_boxes": ragged [B, None, 4]}.

  training=True: seeded shuffle reshuffled every epoch, repeated forever,
  incomplete batches dropped; the order is a function of `seed`, and the stream
  starts at batch `start_step` of it (the batches of a resumed run). Decoded examples
  are kept in memory when they fit `cache_budget_bytes`. training=False:
  one pass in the order the records were written, the last batch kept.
  input_context (tf.distribute.InputContext): this pipeline reads its share of
  shards (or of records, when there are fewer shards than pipelines) and batches
  `input_context.get_per_replica_batch_size(batch_size)` examples.
  max_examples: keep a random subset (drawn with `seed`, kept in order) of at
  most this many examples, chosen before decoding (e.g. a quick probe or the
  paper's 1000 random queries); not with `input_context`.
  """
  manifest = manifest_lib.read_manifest(data_dir)
  modality = mod_lib.parse_modality(modality)
  if split not in mod_lib.SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if start_step and not training:
    raise ValueError("start_step: only a training stream has steps")
  if max_examples is not None and (max_examples < 1 or input_context is not None):
    raise ValueError(f"max_examples must be >= 1 and used without input_context, got "
                     f"{max_examples}")
  source = _Source.of(manifest, data_dir, modality, split, image_size=image_size,
                      exclude_categories=exclude_categories, seed=seed,
                      input_context=input_context, with_meta=with_meta,
                      max_examples=max_examples)
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  if drop_remainder is None:
    drop_remainder = training
  fits = source.num_examples * source.bytes_per_example <= cache_budget_bytes
  # Decoding once needs the examples as numpy arrays: an eager call, no meta.
  if training and fits and not with_meta and tf.executing_eagerly():
    return _in_memory_stream(source, batch_size=batch_size, start_step=start_step,
                             drop_remainder=drop_remainder,
                             cache_budget_bytes=cache_budget_bytes)
  return _read_stream(source, batch_size=batch_size, training=training, cache=fits,
                      start_step=start_step, drop_remainder=drop_remainder,
                      shuffle_buffer=shuffle_buffer)


@dataclasses.dataclass(frozen=True)
class _Source:
  """What one input pipeline reads: its shards, categories, size and share of the data."""
  data_dir: str
  modality: str
  split: str
  paths: tuple
  excluded: tuple
  image_size: int
  as_uint8: bool  # stored at the requested size: kept as uint8 up to the batch
  vector_dim: int
  num_pipelines: int
  pipeline_id: int
  total: int  # examples of this pipeline (rounded)
  num_examples: float  # the same, kept or capped by max_examples, for the memory budget
  seed: int
  with_meta: bool
  max_examples: object

  @classmethod
  def of(cls, manifest, data_dir, modality, split, *, image_size, exclude_categories, seed,
         input_context, with_meta, max_examples):
    excluded = manifest_lib.label_ids(manifest, exclude_categories)
    stored_size = manifest["image_size"]
    image_size = int(image_size or stored_size)
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
      num_pipelines, pipeline_id = (input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
    count = _count(manifest, modality, split, excluded)
    num_examples = count / num_pipelines
    if max_examples is not None:
      num_examples = min(num_examples, max_examples)
    return cls(data_dir=data_dir, modality=modality, split=split,
               paths=tuple(manifest_lib.shard_paths(manifest, data_dir, modality, split)),
               excluded=tuple(excluded), image_size=image_size,
               as_uint8=image_size == stored_size, vector_dim=manifest["vector_dim"],
               num_pipelines=num_pipelines, pipeline_id=pipeline_id,
               total=int(round(count / num_pipelines)), num_examples=num_examples,
               seed=seed, with_meta=with_meta, max_examples=max_examples)

  @property
  def bytes_per_example(self):
    if mod_lib.is_image(self.modality):
      return self.image_size * self.image_size * 3 * (1 if self.as_uint8 else 4)
    return self.vector_dim * 4

  def finisher(self):
    return _make_finisher(self.modality, self.as_uint8, self.with_meta)


def _decoded_examples(source, *, shuffle_files):
  """Decoded (x, label[, meta]) of `source` in write order, or from seeded-shuffled shards."""
  paths, num_pipelines, pipeline_id = list(source.paths), source.num_pipelines, source.pipeline_id
  files = tf.data.Dataset.from_tensor_slices(paths)
  shard_records = num_pipelines > 1 and len(paths) < num_pipelines
  if num_pipelines > 1 and not shard_records:
    files = files.shard(num_pipelines, pipeline_id)
  num_files = len(paths) if shard_records else len(paths[pipeline_id::num_pipelines])
  if shuffle_files:
    files = files.shuffle(num_files, seed=source.seed, reshuffle_each_iteration=True)
    cycle = min(num_files, _TRAIN_CYCLE)
  else:
    cycle = num_files if num_files <= _MAX_ORDERED_CYCLE else 1
  if cycle > 1:
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
                          num_parallel_calls=AUTOTUNE, deterministic=True)
  else:
    ds = files.flat_map(tf.data.TFRecordDataset)
  if shard_records:
    ds = ds.shard(num_pipelines, pipeline_id)
  spec = features.feature_spec(source.modality, source.vector_dim, with_objects=source.with_meta)
  ds = ds.batch(_PARSE_BATCH).map(lambda s: tf.io.parse_example(s, spec),
                                  num_parallel_calls=AUTOTUNE).unbatch()
  if source.excluded:
    ds = ds.filter(_make_label_filter(list(source.excluded)))
  max_examples, total = source.max_examples, source.total
  if max_examples is not None and max_examples < total:
    keep = np.zeros(total, bool)
    keep[np.random.default_rng(source.seed).choice(total, max_examples, replace=False)] = True
    ds = ds.enumerate().filter(_make_index_filter(keep)).map(_drop_index)
  return ds.map(_make_decoder(source.modality, source.image_size, source.as_uint8,
                              source.with_meta),
                num_parallel_calls=AUTOTUNE)


def _in_memory_stream(source, *, batch_size, start_step, drop_remainder, cache_budget_bytes):
  """A training stream over examples decoded once per process: every epoch a permutation
  of indices drawn from (seed, epoch), gathered a batch at a time."""
  key = (_dataset_identity(source.paths), source.modality, source.split, source.image_size,
         source.excluded, source.max_examples,
         source.seed if source.max_examples is not None else None, source.num_pipelines,
         source.pipeline_id)
  x, y = _decoded_in_memory(key, lambda: _decoded_examples(source, shuffle_files=False),
                            cache_budget_bytes)
  if len(y) == 0:
    raise DataError(f"no {source.modality}/{source.split} examples left for this input "
                    "pipeline", path=source.data_dir)
  ds = _epoch_permutations(len(y), source.seed, first=start_step * batch_size)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(_make_gather(tf.constant(x), tf.constant(y), source.finisher()),
              num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def _read_stream(source, *, batch_size, training, cache, start_step, drop_remainder,
                 shuffle_buffer):
  """Examples read from the shards: one pass in write order, or (training) a seeded
  shuffle over shuffled shards, repeated, cached when it fits (`cache`)."""
  ds = _decoded_examples(source, shuffle_files=training)
  if training:
    if cache:
      ds = ds.cache()
    ds = ds.shuffle(max(1, min(math.ceil(source.num_examples), shuffle_buffer)),
                    seed=source.seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if start_step:
    ds = ds.skip(start_step)  # reads the skipped batches: only data too big for memory
  ds = ds.map(source.finisher(), num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def _epoch_permutations(n, seed, first=0):
  """Example indices of every epoch, each a permutation drawn from (seed, epoch) alone,
  concatenated forever and started at position `first` of that sequence."""
  seed = tf.constant(int(seed), tf.int64)

  def permutation(epoch):
    keys = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch]), alg="philox")
    return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

  ds = tf.data.Dataset.range(first // n, tf.int64.max).flat_map(permutation)
  return ds.skip(first % n)


# Decoded training data kept per process, so that datasets created again (e.g. one
# per checkpoint interval) start at once instead of decoding every image again.
_MEMORY = collections.OrderedDict()


def _dataset_identity(paths):
  """The shards as they are on disk: a rebuilt dataset gets a new identity."""
  identity = []
  for path in paths:
    stat = os.stat(path)
    identity.append((os.path.abspath(path), stat.st_size, stat.st_mtime_ns))
  return tuple(identity)


def _decoded_in_memory(key, make_examples, budget_bytes):
  """(x, labels) numpy arrays of the decoded examples of `make_examples()`, once per key."""
  if key in _MEMORY:
    _MEMORY.move_to_end(key)
    return _MEMORY[key]
  ds = make_examples()
  xs, ys = [], []
  try:
    for x, y in ds.batch(1024).as_numpy_iterator():
      xs.append(x)
      ys.append(y)
  except tf.errors.DataLossError as e:
    raise _damaged_shard([path for path, _, _ in key[0]], e) from None
  element = ds.element_spec[0]
  x = np.concatenate(xs) if xs else np.zeros([0] + element.shape.as_list(),
                                             element.dtype.as_numpy_dtype)
  y = np.concatenate(ys) if ys else np.zeros([0], np.int32)
  _MEMORY[key] = (x, y)
  while len(_MEMORY) > 1 and sum(a.nbytes for a, _ in _MEMORY.values()) > budget_bytes:
    _MEMORY.popitem(last=False)
  return x, y


def _damaged_shard(paths, error):
  """A DataError naming the shard and record TensorFlow could not read (`error` names
  neither)."""
  from cmp_tf.data import tfrecord_io

  for path in paths:
    for _ in tfrecord_io.iter_serialized(path):  # raises DataError(path, record) there
      pass
  return DataError(f"a training shard could not be read ({error.message.strip()}); "
                   "rebuild the dataset", path=os.path.dirname(paths[0]))


def clear_memory():
  """Forgets the decoded training data kept in memory."""
  _MEMORY.clear()


def _make_gather(x, y, finish):

  def gather(indices):
    return finish(tf.gather(x, indices), tf.gather(y, indices))

  return gather


def _make_label_filter(excluded):
  excluded = tf.constant(excluded, tf.int64)

  def kept(parsed):
    return tf.logical_not(tf.reduce_any(tf.equal(parsed[features.LABEL], excluded)))

  return kept


def _make_index_filter(keep):
  keep = tf.constant(keep)

  def kept(index, parsed):
    del parsed
    return keep[index]

  return kept


def _drop_index(index, parsed):
  del index
  return parsed


def _make_decoder(modality, image_size, as_uint8, with_meta):
  """Per-example map: parsed features -> (x, label[, meta]) before batching."""

  def decode(parsed):
    if mod_lib.is_image(modality):
      encoded = parsed[features.IMAGE]
      x = _decode_uint8(encoded, image_size) if as_uint8 else features.decode_image(
          encoded, image_size)
    else:
      x = parsed[features.VECTOR]
    label = tf.cast(parsed[features.LABEL], tf.int32)
    if not with_meta:
      return x, label
    meta = {"example_id": parsed[features.EXAMPLE_ID],
            "category": parsed[features.CATEGORY],
            "object_names": parsed[features.OBJECT_NAMES],
            "object_boxes": parsed[features.OBJECT_BOXES]}
    return x, label, meta

  return decode


def _decode_uint8(encoded, image_size):
  """uint8 pixels whose scaling to [0, 1] equals `features.decode_image` exactly.

  An image stored at another size goes through `features.decode_image` and is
  quantised back to uint8 (the build never writes such images).
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.ensure_shape(image, [None, None, 3])
  shape = tf.shape(image)
  fits = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
  image = tf.cond(
      fits, lambda: image,
      lambda: tf.image.convert_image_dtype(features.decode_image(encoded, image_size),
                                           tf.uint8, saturate=True))
  return tf.ensure_shape(image, [image_size, image_size, 3])


def _make_finisher(modality, as_uint8, with_meta):
  """Per-batch map: uint8 -> float32 in [0, 1]; sparse object lists -> ragged."""

  def finish(x, label, meta=None):
    if mod_lib.is_image(modality) and as_uint8:
      x = tf.image.convert_image_dtype(x, tf.float32)
    if meta is None:
      return x, label
    names = tf.RaggedTensor.from_sparse(meta["object_names"])
    flat_boxes = tf.RaggedTensor.from_sparse(meta["object_boxes"])
    boxes = tf.RaggedTensor.from_row_lengths(
        tf.reshape(flat_boxes.values, [-1, 4]), flat_boxes.row_lengths() // 4)
    meta = {"example_id": meta["example_id"], "category": meta["category"],
            "object_names": names, "object_boxes": boxes}
    return x, label, meta

  return finish


def joint_dataset(data_dir, modalities, *, batch_size, image_size=None, exclude_categories=(),
                  seed=0, start_step=0, input_context=None,
                  cache_budget_bytes=DEFAULT_CACHE_BUDGET_BYTES):
  """Zipped infinite training streams: ({modality: x}, {modality: label}) per step,
  from step `start_step` on.

  Each modality contributes one batch of `batch_size` (per replica with
  `input_context`) per step. `exclude_categories` is removed from every modality
  except NAT, as in the paper's zero-shot protocol (NAT keeps all categories).
  Each modality is shuffled with its own seed derived from `seed`.
  """
  modalities = mod_lib.parse_modalities(modalities)
  streams = []
  for modality in modalities:
    streams.append(modality_dataset(
        data_dir, modality, "train", batch_size=batch_size, training=True,
        image_size=image_size,
        exclude_categories=() if modality == mod_lib.NAT else exclude_categories,
        seed=seed * len(mod_lib.ALL_MODALITIES) + mod_lib.ALL_MODALITIES.index(modality),
        start_step=start_step, input_context=input_context,
        cache_budget_bytes=cache_budget_bytes))

  def to_dicts(*pairs):
    return ({m: p[0] for m, p in zip(modalities, pairs)},
            {m: p[1] for m, p in zip(modalities, pairs)})

  return tf.data.Dataset.zip(tuple(streams)).map(to_dicts).prefetch(AUTOTUNE)
