"""The folders source: ROOT/<modality>/<category>/<file>, built from a tree made here."""

import numpy as np
import pytest
from PIL import Image

from cmp_tf.data import build, tfrecord_io
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data.build_config import BuildConfig
from cmp_tf.errors import DataError
from tests.commands import run_command

CATEGORIES = ("harbor", "attic", "bakery")  # not sorted: labels follow the sorted names
FILES = 4  # per modality and category


def _tree(root, modalities=("ldr", "dsc")):
  rng = np.random.default_rng(0)
  for modality in modalities:
    for c, category in enumerate(CATEGORIES):
      folder = root / modality / category
      folder.mkdir(parents=True)
      for i in range(FILES):
        if modality == "dsc":
          (folder / f"{i}.txt").write_text(f"A {category} scene number {i}. It is quiet.",
                                           encoding="utf-8")
        else:
          pixels = rng.integers(0, 255, (20 + c, 24, 3), dtype=np.uint8)
          Image.fromarray(pixels).save(folder / f"{i}.png")
  return root


def _config(root, **overrides):
  fields = dict(source="folders", folders_root=str(root), modalities=("ldr", "dsc"),
                image_size=16, val_per_category=1, dev_per_category=1, workers=1,
                report=False)
  fields.update(overrides)
  return BuildConfig(**fields)


def test_a_folder_tree_builds_with_sorted_categories_and_carved_splits(tmp_path):
  root = _tree(tmp_path / "mine")
  manifest = build.build_dataset(tmp_path / "out", _config(root), progress=False)
  assert manifest["source"] == "folders"
  assert manifest["categories"] == sorted(CATEGORIES)
  assert manifest["build"]["folders"]["root"] == str(root)
  assert set(manifest["modalities"]) == {"ldr", "dsc"}
  for modality, splits in manifest["modalities"].items():
    assert splits["val"]["label_counts"] == [1, 1, 1]
    assert splits["dev"]["label_counts"] == [1, 1, 1]
    assert splits["train"]["label_counts"] == [FILES - 2] * 3
    records = tfrecord_io.read_records(manifest_lib.shard_paths(
        manifest, tmp_path / "out", modality, "train"))
    for record in records:  # the label is the category folder's place in sorted order
      assert record.category == sorted(CATEGORIES)[record.label]
      assert record.example_id.startswith(f"{modality}/train/{record.category}/")
  dsc = tfrecord_io.read_records(manifest_lib.shard_paths(manifest, tmp_path / "out", "dsc",
                                                          "val"))
  assert all(r.vector.shape == (512,) and np.abs(r.vector).sum() > 0 for r in dsc)


def test_the_splits_are_seeded(tmp_path):
  root = _tree(tmp_path / "mine")
  ids = []
  for seed in (0, 0, 1):
    out = tmp_path / f"out{len(ids)}"
    manifest = build.build_dataset(out, _config(root, seed=seed, modalities=("ldr",)),
                                   progress=False)
    ids.append(sorted(r.example_id for r in tfrecord_io.read_records(
        manifest_lib.shard_paths(manifest, out, "ldr", "val"))))
  assert ids[0] == ids[1] and ids[0] != ids[2]


def test_a_missing_modality_folder_names_the_flag_and_what_is_there(tmp_path):
  root = _tree(tmp_path / "mine", modalities=("ldr",))
  with pytest.raises(ValueError, match=r"--folders_root: .* has no folder for dsc.*"
                                       r"--modalities=ldr"):
    build.build_dataset(tmp_path / "out", _config(root), progress=False)


def test_a_file_of_the_wrong_kind_is_named_or_skipped(tmp_path):
  root = _tree(tmp_path / "mine")
  stray = root / "ldr" / "attic" / "notes.doc"
  stray.write_text("not an image")
  with pytest.raises(DataError, match="notes.doc") as info:
    build.build_dataset(tmp_path / "out", _config(root), progress=False)
  assert str(stray) in str(info.value)
  assert not (tmp_path / "out").exists()
  manifest = build.build_dataset(tmp_path / "out", _config(root, skip_bad=True),
                                 progress=False)
  assert manifest["skipped"]["ldr/train"] == {"wrong_kind": 1}


def test_an_unreadable_image_is_named(tmp_path):
  root = _tree(tmp_path / "mine")
  (root / "ldr" / "bakery" / "9.png").write_bytes(b"no png here")
  with pytest.raises(DataError, match="9.png"):
    build.build_dataset(tmp_path / "out", _config(root), progress=False)


def test_a_file_among_the_category_folders_is_named(tmp_path):
  root = _tree(tmp_path / "mine")
  (root / "dsc" / "readme.txt").write_text("hello")
  with pytest.raises(DataError, match="expected only category folders.*readme.txt"):
    build.build_dataset(tmp_path / "out", _config(root), progress=False)


@pytest.mark.parametrize("flags,message", [
    (["--source=folders"], "--folders_root: required"),
    (["--folders_root=/x"], "--folders_root: only used with --source=folders"),
])
def test_folder_flags_are_checked(tmp_path, flags, message):
  result = run_command("cmp_tf.build_data", *flags, f"--data_dir={tmp_path / 'out'}")
  assert result.returncode != 0 and message in result.stderr


def test_the_command_builds_a_folder_tree(tmp_path):
  root = _tree(tmp_path / "mine", modalities=("ldr",))
  result = run_command("cmp_tf.build_data", "--source=folders", f"--folders_root={root}",
                       "--modalities=ldr", "--image_size=16", "--val_per_category=1",
                       "--report=false", "--workers=1", f"--data_dir={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert manifest_lib.read_manifest(tmp_path / "out")["categories"] == sorted(CATEGORIES)
