"""tf.data input: shapes, exact pixels, exclusion, determinism, per-replica batches."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.data import features, input_pipeline, tfrecord_io
from cmp_tf.data import manifest as manifest_lib

CATEGORIES = ["kitchen", "bedroom", "forest_path", "harbor"]
SIZE = 16
DIM = 6
PER_CATEGORY = {"train": 9, "dev": 2, "val": 3}


def _png(rng):
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


def _records(modality, split):
  rng = np.random.default_rng([mod_lib.ALL_MODALITIES.index(modality), len(split)])
  out = []
  for label, category in enumerate(CATEGORIES):
    for i in range(PER_CATEGORY[split]):
      record = features.ExampleRecord(
          modality=modality, label=label, category=category,
          example_id=f"{modality}/{split}/{category}/{i:06d}",
          object_names=["lamp"] * (i % 3), object_boxes=np.full((i % 3, 4), 0.25, np.float32))
      if mod_lib.is_image(modality):
        record.image_png = _png(rng)
      else:
        record.text = f"Something {i}."
        record.vector = rng.normal(size=DIM).astype(np.float32)
      out.append(record)
  return out


def write_dataset(data_dir, modalities=(mod_lib.NAT, mod_lib.DSC), num_shards=3):
  """A small dataset in the build's layout, written with the real writer."""
  splits, written = {}, {}
  for modality in modalities:
    splits[modality] = {}
    for split in mod_lib.SPLITS:
      records = _records(modality, split)
      written[modality, split] = records
      names, n = tfrecord_io.write_sharded(records, os.path.join(data_dir, modality), split,
                                           num_shards, DIM)
      splits[modality][split] = {
          "count": n, "shards": [f"{modality}/{s}" for s in names],
          "label_counts": [PER_CATEGORY[split]] * len(CATEGORIES)}
  manifest_lib.write_manifest(data_dir, {
      "format_version": 1, "source": "synthcmp", "categories": CATEGORIES,
      "heldout_categories": ["harbor"], "seed": 0, "image_size": SIZE,
      "sentence_encoder": {"name": "test", "dim": DIM}, "vector_dim": DIM,
      "modalities": splits, "skipped": {}, "build": {}})
  return written


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("pipeline_data"))
  return data_dir, write_dataset(data_dir)


def _collect(ds, n=None):
  xs, ys = [], []
  for i, batch in enumerate(ds):
    if n is not None and i >= n:
      break
    xs.append(batch[0].numpy())
    ys.append(batch[1].numpy())
  return np.concatenate(xs), np.concatenate(ys)


def test_eval_images_are_decode_image_exactly_in_write_order(dataset):
  data_dir, written = dataset
  ds = input_pipeline.modality_dataset(data_dir, "nat", "val", batch_size=5, training=False)
  assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
  x, y = _collect(ds)
  records = written["nat", "val"]
  assert x.shape == (len(records), SIZE, SIZE, 3)
  np.testing.assert_array_equal(y, [r.label for r in records])
  for i in (0, 5, len(records) - 1):
    np.testing.assert_array_equal(x[i], features.decode_image(records[i].image_png, SIZE).numpy())
  assert 0.0 <= x.min() and x.max() <= 1.0


def test_resized_images_match_decode_image(dataset):
  data_dir, written = dataset
  ds = input_pipeline.modality_dataset(data_dir, "nat", "val", batch_size=4, training=False,
                                       image_size=8)
  x, _ = _collect(ds)
  assert x.shape[1:] == (8, 8, 3)
  np.testing.assert_array_equal(x[3], features.decode_image(written["nat", "val"][3].image_png,
                                                            8).numpy())


def test_dsc_vectors_and_meta(dataset):
  data_dir, written = dataset
  ds = input_pipeline.modality_dataset(data_dir, "dsc", "val", batch_size=5, training=False,
                                       with_meta=True)
  x, y, meta = next(iter(ds))
  records = written["dsc", "val"][:5]
  np.testing.assert_array_equal(x.numpy(), np.stack([r.vector for r in records]))
  assert [s.decode() for s in meta["example_id"].numpy()] == [r.example_id for r in records]
  assert [s.decode() for s in meta["category"].numpy()] == [r.category for r in records]
  assert meta["object_names"].to_list() == [[n.encode() for n in r.object_names] for r in records]
  boxes = meta["object_boxes"]
  assert boxes.shape.as_list() == [5, None, 4]
  np.testing.assert_array_equal(boxes[2].numpy(), records[2].boxes())


def test_exclude_categories_and_count(dataset):
  data_dir, _ = dataset
  ds = input_pipeline.modality_dataset(data_dir, "nat", "train", batch_size=7, training=False,
                                       exclude_categories=["bedroom", "harbor"])
  _, y = _collect(ds)
  assert set(y.tolist()) == {0, 2}
  assert len(y) == input_pipeline.count(data_dir, "nat", "train", ["bedroom", "harbor"]) == 18
  assert input_pipeline.count(data_dir, "nat", "train") == 36
  with pytest.raises(ValueError, match="exclude_categories.*'attic'"):
    input_pipeline.modality_dataset(data_dir, "nat", "train", batch_size=2, training=False,
                                    exclude_categories=["attic"])


@pytest.mark.parametrize("budget", [input_pipeline.DEFAULT_CACHE_BUDGET_BYTES, 0])
def test_training_is_shuffled_repeated_and_seeded(dataset, budget):
  data_dir, _ = dataset

  def labels(seed):
    ds = input_pipeline.modality_dataset(data_dir, "nat", "train", batch_size=8, training=True,
                                         seed=seed, cache_budget_bytes=budget)
    assert ds.element_spec[0].shape.as_list() == [8, SIZE, SIZE, 3]
    return _collect(ds, n=20)[1]

  a, b, c = labels(1), labels(1), labels(2)
  assert len(a) == 160  # more than the 36 examples: it repeats
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert not np.array_equal(a[:36], np.sort(a[:36]))  # shuffled
  assert not np.array_equal(a[:32], a[36:68])  # reshuffled each epoch


@pytest.mark.parametrize("budget", [input_pipeline.DEFAULT_CACHE_BUDGET_BYTES, 0])
def test_a_stream_started_at_a_step_continues_the_stream_from_zero(dataset, budget):
  data_dir, _ = dataset

  def stream(start_step, n):
    ds = input_pipeline.modality_dataset(data_dir, "nat", "train", batch_size=8, training=True,
                                         seed=3, start_step=start_step,
                                         cache_budget_bytes=budget)
    return [x for x, _ in ds.take(n).as_numpy_iterator()]

  whole = stream(0, 12)
  for start in (1, 4, 9):  # 36 examples: step 9 starts in the third epoch
    for a, b in zip(stream(start, 12 - start), whole[start:]):
      np.testing.assert_array_equal(a, b)


def test_training_data_is_decoded_once_per_process(tmp_path):
  data_dir = str(tmp_path)
  write_dataset(data_dir, modalities=("clp",), num_shards=2)
  input_pipeline.clear_memory()

  def first_batch():
    ds = input_pipeline.modality_dataset(data_dir, "clp", "train", batch_size=4, training=True,
                                         seed=7, exclude_categories=["harbor"])
    return next(iter(ds))

  x1, y1 = first_batch()
  assert len(input_pipeline._MEMORY) == 1
  x2, y2 = first_batch()
  assert len(input_pipeline._MEMORY) == 1
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(y1, y2)
  assert 3 not in first_batch()[1].numpy()
  write_dataset(data_dir, modalities=("clp",), num_shards=3)  # rebuilt: new shards
  first_batch()
  assert len(input_pipeline._MEMORY) == 2
  input_pipeline.clear_memory()


def test_eval_keeps_last_partial_batch(dataset):
  data_dir, _ = dataset
  sizes = [int(b[1].shape[0]) for b in input_pipeline.modality_dataset(
      data_dir, "dsc", "val", batch_size=5, training=False)]
  assert sizes == [5, 5, 2]


def test_input_context_shards_records_and_splits_batch(dataset):
  data_dir, _ = dataset
  ids = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    ds = input_pipeline.modality_dataset(data_dir, "dsc", "train", batch_size=8,
                                         training=False, with_meta=True, input_context=context)
    batches = list(ds)
    assert int(batches[0][1].shape[0]) == 4
    ids.append({s for b in batches for s in b[2]["example_id"].numpy()})
  assert not ids[0] & ids[1]
  assert len(ids[0] | ids[1]) == 36


def test_joint_dataset_zips_modalities_and_excludes_only_non_nat(dataset):
  data_dir, _ = dataset
  ds = input_pipeline.joint_dataset(data_dir, ["nat", "dsc"], batch_size=6,
                                    exclude_categories=["kitchen"], seed=3)
  xs, ys = ds.element_spec
  assert set(xs) == set(ys) == {"nat", "dsc"}
  assert xs["nat"].shape.as_list() == [6, SIZE, SIZE, 3] and xs["dsc"].shape.as_list() == [6, DIM]
  nat, dsc = [], []
  for _, y in ds.take(12):
    nat.extend(y["nat"].numpy())
    dsc.extend(y["dsc"].numpy())
  assert 0 in nat and 0 not in dsc


def test_missing_dataset_says_how_to_build(tmp_path):
  with pytest.raises(Exception, match="python -m cmp_tf.build_data"):
    input_pipeline.modality_dataset(tmp_path / "none", "nat", "train", batch_size=2,
                                    training=True)
  with pytest.raises(Exception, match="incomplete build"):
    (tmp_path / "nat").mkdir()
    input_pipeline.modality_dataset(tmp_path, "nat", "train", batch_size=2, training=True)


_TWO_REPLICAS = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[2])
    from test_input_pipeline import write_dataset
    from cmp_tf.data import input_pipeline
    write_dataset(sys.argv[1])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    def single(ctx):
      return input_pipeline.modality_dataset(sys.argv[1], "nat", "train", batch_size=8,
                                             training=True, input_context=ctx)
    def joint(ctx):
      return input_pipeline.joint_dataset(sys.argv[1], ["nat", "dsc"], batch_size=8,
                                          input_context=ctx)
    x, y = next(iter(strategy.distribute_datasets_from_function(single)))
    shapes = [t.shape.as_list() for t in strategy.experimental_local_results(x)]
    assert shapes == [[4, 16, 16, 3]] * 2, shapes
    xs, ys = next(iter(strategy.distribute_datasets_from_function(joint)))
    shapes = [t.shape.as_list() for t in strategy.experimental_local_results(xs["dsc"])]
    assert shapes == [[4, 6]] * 2, shapes
    labels = [t.shape.as_list() for t in strategy.experimental_local_results(ys["nat"])]
    assert labels == [[4]] * 2, labels
    print("OK")
""")


@pytest.mark.slow
def test_two_replicas_get_half_the_global_batch(tmp_path):
  result = subprocess.run(
      [sys.executable, "-c", _TWO_REPLICAS, str(tmp_path), os.path.dirname(__file__)],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("OK")


def test_max_examples_keeps_a_seeded_subset_in_order(dataset):
  data_dir, written = dataset

  def ids(seed):
    ds = input_pipeline.modality_dataset(data_dir, "dsc", "train", batch_size=4,
                                         training=False, with_meta=True, max_examples=10,
                                         seed=seed, exclude_categories=["kitchen"])
    return [s.decode() for b in ds for s in b[2]["example_id"].numpy()]

  a = ids(0)
  order = [r.example_id for r in written["dsc", "train"]]
  assert len(a) == 10 and a == sorted(a, key=order.index)
  assert not any("/kitchen/" in i for i in a)
  assert a == ids(0) and a != ids(1)


def test_a_damaged_training_shard_is_named_with_its_record(dataset, damaged_copy):
  from cmp_tf.errors import DataError
  data_dir, shard = damaged_copy(dataset[0], "nat")  # same size: only record checksums see it
  with pytest.raises(DataError, match=f"^{shard}, record \\d+: truncated or corrupt"):
    input_pipeline.modality_dataset(str(data_dir), "nat", "train", batch_size=4,
                                    training=True)
