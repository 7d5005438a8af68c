"""Sharded TFRecord files: an all-or-nothing writer and a reader that checks every record.

A split is written round-robin over its shards (record i goes to shard i % n),
so reading the shards interleaved with cycle length n and block length 1
restores the original order. Shards are written under temporary names and
renamed only when the whole split succeeded; a failure removes them all.
"""

import math
import os

import tensorflow as tf

from cmp_tf import fileio
from cmp_tf.data import features
from cmp_tf.errors import DataError

TARGET_SHARD_BYTES = 4 << 20  # a few MB per shard
MAX_SHARDS = 1024
_TMP_MARK = ".tmp"  # in fileio.atomic_path's temp names


def shard_name(split, index, num_shards):
  """File name of shard `index` of `num_shards`, e.g. "train-00000-of-00004.tfrecord"."""
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def choose_num_shards(num_records, bytes_per_record, target_bytes=TARGET_SHARD_BYTES):
  """Number of shards that keeps each near `target_bytes` (at least one, at most MAX_SHARDS)."""
  if num_records <= 0:
    return 1
  total = float(num_records) * max(float(bytes_per_record), 1.0)
  return int(min(MAX_SHARDS, num_records, max(1, math.ceil(total / target_bytes))))


def serialize(record, vector_dim):
  # Protobuf map order is not stable across processes unless asked: sort the keys.
  return features.to_tf_example(record, vector_dim).SerializeToString(deterministic=True)


def write_shard(path, serialized):
  """Writes the serialized records `serialized`, in order, as the shard `path`: under a
  temporary name, renamed when complete."""
  with fileio.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
    for record in serialized:
      writer.write(record)


def write_sharded(records, out_dir, split, num_shards, vector_dim):
  """Writes `records` (ExampleRecords) round-robin into `num_shards` shards in `out_dir`.

  Returns (shard file names relative to `out_dir`, number of records). Shards of
  the same split left by an earlier write are replaced; on any error no file of
  this write remains (the exception propagates).
  """
  num_shards = int(num_shards)
  if num_shards < 1:
    raise ValueError(f"write_sharded: num_shards must be >= 1, got {num_shards}")
  serialized = [serialize(record, vector_dim) for record in records]  # all checked first
  os.makedirs(out_dir, exist_ok=True)
  names = [shard_name(split, i, num_shards) for i in range(num_shards)]
  written = []
  try:
    for i, name in enumerate(names):
      write_shard(os.path.join(out_dir, name), serialized[i::num_shards])
      written.append(name)
  except BaseException:
    for name in written:
      os.remove(os.path.join(out_dir, name))
    raise
  _remove_stale_shards(out_dir, split, keep=set(names))
  return names, len(serialized)


def _remove_stale_shards(out_dir, split, keep):
  """Removes shards of `split` from an earlier write with another shard count."""
  for name in os.listdir(out_dir):
    if (name.startswith(f"{split}-") and name.endswith(".tfrecord") and "-of-" in name
        and name not in keep):
      os.remove(os.path.join(out_dir, name))


def remove_temp_files(out_dir):
  """Removes temporary shard files left by a writer that was killed (not just failed)."""
  if not os.path.isdir(out_dir):
    return
  for name in os.listdir(out_dir):
    if name.startswith(".") and _TMP_MARK in name and ".tfrecord" in name:
      os.remove(os.path.join(out_dir, name))


def iter_serialized(path):
  """Yields (index, serialized record) of one shard; a damaged shard -> DataError."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError("TFRecord shard is missing", path=path)
  index = 0
  iterator = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
  while True:
    try:
      serialized = next(iterator)
    except StopIteration:
      return
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
      raise DataError(
          f"truncated or corrupt TFRecord shard ({e.message.strip()}); rebuild the dataset",
          path=path, record=index) from None
    yield index, serialized
    index += 1


def verify_shards(paths):
  """Reads every record of every shard in `paths`; returns the total number of records.

  A truncated or corrupt shard, or a record that is not a tf.train.Example,
  raises DataError naming the file and the record index.
  """
  total = 0
  for path in paths:
    for index, serialized in iter_serialized(path):
      try:
        tf.train.Example.FromString(serialized)
      except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise DataError(f"record is not a tf.train.Example ({e})", path=path,
                        record=index) from None
      total += 1
  return total


def read_records(paths):
  """All records of `paths` as ExampleRecords, shard by shard (for tools and tests)."""
  return [features.from_tf_example(s) for path in paths for _, s in iter_serialized(path)]
