"""The contact-sheet preview of a built dataset, on a tiny hand-written dataset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.data import features, preview, synthcmp
from cmp_tf.errors import DataError

CATEGORIES = ["kitchen", "coast", "highway"]
VECTOR_DIM = 4


def _write_dataset(data_dir, modalities=mod_lib.ALL_MODALITIES, per_category=2):
  grammar = synthcmp.load_grammar()
  entries = {}
  for modality in modalities:
    shard = f"{modality}/val-00000-of-00001.tfrecord"
    os.makedirs(data_dir / modality, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(data_dir / shard)) as writer:
      # Interleaved categories, so the reader has to search the shard.
      for index in range(per_category):
        for label, category in enumerate(CATEGORIES):
          record = synthcmp.render_record(grammar, modality, "val", category, label, index, 0, 32)
          if modality == mod_lib.DSC:
            record.vector = np.zeros(VECTOR_DIM, np.float32)
          writer.write(features.to_tf_example(record, VECTOR_DIM).SerializeToString())
          count += 1
    entries[modality] = {"val": {"count": count, "shards": [shard]}}
  manifest = {
      "format_version": 1, "source": "synthcmp", "categories": CATEGORIES,
      "heldout_categories": ["coast"], "seed": 0, "image_size": 32,
      "sentence_encoder": {"name": "zeros", "dim": VECTOR_DIM}, "vector_dim": VECTOR_DIM,
      "modalities": entries, "skipped": {},
      "build": {"wall_time_s": 0.0, "created": "2026-01-01T00:00:00", "argv": []},
  }
  (data_dir / "manifest.json").write_text(json.dumps(manifest))
  return data_dir


def test_contact_sheet_shows_every_category_and_modality(tmp_path):
  data_dir = _write_dataset(tmp_path / "data")
  sheet = preview.make_contact_sheet(data_dir, per_category=2, max_categories=2, cell=48)
  assert sheet.size == preview.sheet_size(2, 2, 48)
  pixels = np.asarray(sheet)
  top = preview.HEADER_HEIGHT
  x = preview.LABEL_WIDTH
  nat_cell = pixels[top:top + 48, x:x + 48]
  assert nat_cell.std() > 5  # a picture, not an empty cell
  # The NAT tile is the kitchen record, upscaled (grid lines run along its top and left edge).
  grammar = synthcmp.load_grammar()
  record = synthcmp.render_record(grammar, "nat", "val", "kitchen", 0, 0, 0, 32)
  expected = preview._image_tile(record, 48)
  np.testing.assert_array_equal(nat_cell[1:, 1:], np.asarray(expected)[1:, 1:])
  dsc_x = x + 4 * 48
  dsc_cell = pixels[top:top + 48, dsc_x:dsc_x + 3 * 48]
  assert (dsc_cell.min(axis=2) < 100).any()  # text was written


def test_missing_modality_leaves_grey_cells(tmp_path):
  data_dir = _write_dataset(tmp_path / "data", modalities=("nat", "dsc"), per_category=1)
  sheet = preview.make_contact_sheet(data_dir, cell=40)
  assert sheet.size == preview.sheet_size(3, 1, 40)
  clp = np.asarray(sheet)[preview.HEADER_HEIGHT + 2, preview.LABEL_WIDTH + 40 + 2]
  assert tuple(clp) == preview.MISSING


def test_bad_data_dir_and_options(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty: no manifest.json here"):
    preview.make_contact_sheet(tmp_path / "empty")
  data_dir = _write_dataset(tmp_path / "data", modalities=("nat",), per_category=1)
  with pytest.raises(ValueError, match="per_category"):
    preview.make_contact_sheet(data_dir, per_category=0)
  with pytest.raises(ValueError, match="split"):
    preview.make_contact_sheet(data_dir, split="test")


def test_truncated_shard_is_named(tmp_path):
  data_dir = _write_dataset(tmp_path / "data", modalities=("nat",), per_category=1)
  shard = data_dir / "nat" / "val-00000-of-00001.tfrecord"
  shard.write_bytes(shard.read_bytes()[:-7])
  with pytest.raises(DataError, match="val-00000-of-00001.tfrecord"):
    preview.make_contact_sheet(data_dir, per_category=5)


def test_atomic_png_write(tmp_path):
  path = tmp_path / "out" / "sheet.png"
  fileio.write_png_atomic(path, Image.new("RGB", (5, 7)))
  assert Image.open(path).size == (5, 7)
  assert os.listdir(path.parent) == ["sheet.png"]


@pytest.mark.slow
def test_command_line(tmp_path):
  data_dir = _write_dataset(tmp_path / "data", per_category=1)
  out = tmp_path / "sheet.png"
  command = [sys.executable, "-m", "cmp_tf.preview_data", f"--data_dir={data_dir}", f"--out={out}"]
  done = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert Image.open(out).size == preview.sheet_size(3, 1, 96)
  (tmp_path / "nothing").mkdir()
  command[3] = f"--data_dir={tmp_path / 'nothing'}"
  done = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2 and "no manifest.json" in done.stderr
