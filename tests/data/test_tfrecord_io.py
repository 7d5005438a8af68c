"""The sharded writer is all-or-nothing and every record reads back as written."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.data import features, tfrecord_io
from cmp_tf.errors import DataError

DIM = 8


def _png(seed, size=16):
  pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def make_record(modality, index, label=None):
  """A small well-formed record of any modality, different for every index."""
  rng = np.random.default_rng(index)
  n_objects = index % 3
  record = features.ExampleRecord(
      modality=modality, label=index % 4 if label is None else label,
      category=f"cat{index % 4}", example_id=f"{modality}/train/cat{index % 4}/{index:06d}",
      object_names=[f"obj{j}" for j in range(n_objects)],
      object_boxes=rng.uniform(0, 1, (n_objects, 4)).astype(np.float32))
  if mod_lib.is_image(modality):
    record.image_png = _png(index)
  else:
    record.text = f"A room with {index} chairs. The lamp is on the left."
    record.vector = rng.normal(size=DIM).astype(np.float32)
  return record


def _same(a, b):
  assert (a.modality, a.label, a.category, a.example_id) == (
      b.modality, b.label, b.category, b.example_id)
  assert a.image_png == b.image_png
  assert a.text == b.text
  if a.vector is None:
    assert b.vector is None
  else:
    np.testing.assert_array_equal(np.asarray(a.vector, np.float32), b.vector)
  assert list(a.object_names) == list(b.object_names)
  np.testing.assert_array_equal(a.boxes(), b.boxes())


@pytest.mark.parametrize("modality", mod_lib.ALL_MODALITIES)
def test_every_record_parses_back_in_order(tmp_path, modality):
  records = [make_record(modality, i) for i in range(11)]
  names, count = tfrecord_io.write_sharded(iter(records), tmp_path, "train", 3, DIM)
  assert count == 11
  assert names == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
  paths = [tmp_path / n for n in names]
  assert tfrecord_io.verify_shards(paths) == 11
  back = tfrecord_io.read_records(paths)
  # Round-robin: shard k holds records k, k + 3, ...
  expected = [records[i] for k in range(3) for i in range(k, 11, 3)]
  assert len(back) == len(expected)
  for a, b in zip(expected, back):
    _same(a, b)


def test_failure_midway_leaves_nothing_behind(tmp_path):
  def records():
    for i in range(7):
      yield make_record("nat", i)
    raise RuntimeError("renderer crashed")

  with pytest.raises(RuntimeError, match="renderer crashed"):
    tfrecord_io.write_sharded(records(), tmp_path / "nat", "train", 2, DIM)
  assert not os.path.exists(tmp_path / "nat") or os.listdir(tmp_path / "nat") == []


def test_bad_record_midway_leaves_earlier_shards_untouched(tmp_path):
  good = [make_record("dsc", i) for i in range(4)]
  names, _ = tfrecord_io.write_sharded(good, tmp_path, "val", 2, DIM)
  before = {n: (tmp_path / n).read_bytes() for n in names}
  bad = make_record("dsc", 9)
  bad.vector = np.zeros(DIM + 1, np.float32)
  with pytest.raises(ValueError, match="expected 8"):
    tfrecord_io.write_sharded(good + [bad], tmp_path, "val", 2, DIM)
  assert sorted(os.listdir(tmp_path)) == sorted(names)
  assert {n: (tmp_path / n).read_bytes() for n in names} == before


def test_rewrite_with_other_shard_count_removes_stale_shards(tmp_path):
  records = [make_record("clp", i) for i in range(6)]
  tfrecord_io.write_sharded(records, tmp_path, "train", 3, DIM)
  tfrecord_io.write_sharded(records, tmp_path, "val", 1, DIM)
  names, _ = tfrecord_io.write_sharded(records, tmp_path, "train", 2, DIM)
  assert sorted(os.listdir(tmp_path)) == sorted(names + ["val-00000-of-00001.tfrecord"])


def test_truncated_shard_names_file_and_record(tmp_path):
  records = [make_record("nat", i) for i in range(5)]
  names, _ = tfrecord_io.write_sharded(records, tmp_path, "train", 1, DIM)
  path = tmp_path / names[0]
  data = path.read_bytes()
  path.write_bytes(data[:len(data) - 40])
  with pytest.raises(DataError) as info:
    tfrecord_io.verify_shards([path])
  assert str(path) in str(info.value)
  assert "record 4" in str(info.value)
  assert "truncated" in str(info.value)


def test_corrupt_byte_names_file_and_record(tmp_path):
  records = [make_record("spt", i) for i in range(3)]
  names, _ = tfrecord_io.write_sharded(records, tmp_path, "train", 1, DIM)
  path = tmp_path / names[0]
  data = bytearray(path.read_bytes())
  data[-30] ^= 0xFF  # inside the last record's payload: its checksum no longer matches
  path.write_bytes(bytes(data))
  with pytest.raises(DataError, match=r"record 2"):
    tfrecord_io.verify_shards([path])


def test_missing_shard_is_named(tmp_path):
  with pytest.raises(DataError, match="missing"):
    tfrecord_io.verify_shards([tmp_path / "nope.tfrecord"])


def test_choose_num_shards_keeps_shards_a_few_mb():
  assert tfrecord_io.choose_num_shards(10, 1000) == 1
  assert tfrecord_io.choose_num_shards(0, 1000) == 1
  n = tfrecord_io.choose_num_shards(100_000, 10_000)
  assert 1e6 <= 100_000 * 10_000 / n <= tfrecord_io.TARGET_SHARD_BYTES
  assert tfrecord_io.choose_num_shards(10**9, 10**6) == tfrecord_io.MAX_SHARDS
