"""CMPlaces as published: the kit's label-file names, Places205's split files, a second
files root, explicit label files, and a build of it that trains end to end."""

import json
import re
import subprocess
import sys

import pytest

from cmp_tf import modalities as mod_lib
from cmp_tf import paths
from cmp_tf.data import build, cmplaces
from cmp_tf.data.build_config import BuildConfig
from cmp_tf.errors import DataError
from tests.data import cmplaces_fixture


@pytest.fixture
def kit(tmp_path):
  return cmplaces_fixture.build_kit(tmp_path / "cmplaces", files_root=tmp_path / "kitdata",
                                    places205_dir=tmp_path / "places205")


def _kit_config(kit, **overrides):
  fields = dict(source="cmplaces", cmplaces_root=str(kit.root),
                cmplaces_files_root=str(kit.files_root),
                places205_train_csv=str(kit.places205 / "train_places205.csv"),
                places205_val_csv=str(kit.places205 / "val_places205.csv"),
                places205_root=str(kit.places205 / "images256"), image_size=16, workers=1,
                report=False, dev_per_category=1, modalities=("nat", "clp", "spt", "ldr"))
  fields.update(overrides)
  return BuildConfig(**fields)


def test_kit_label_files_are_found_by_their_published_names(kit):
  for modality, name in cmplaces_fixture.KIT_LABEL_NAMES.items():
    for split in ("train", "val"):
      assert cmplaces.label_file_path(kit.root, modality, split) == str(
          kit.root / "labels" / f"{name}_{split}.txt")


@pytest.mark.parametrize("modality,alias", [
    (m, a) for m, names in cmplaces.LABEL_FILE_NAMES.items() for a in names])
def test_every_alias_is_found(tmp_path, modality, alias):
  labels = tmp_path / "labels"
  labels.mkdir()
  for split in ("train", "test"):
    (labels / f"{alias}_{split}.txt").write_text("x 0\n")
  assert cmplaces.label_file_path(tmp_path, modality, "train").endswith(f"{alias}_train.txt")
  assert cmplaces.label_file_path(tmp_path, modality, "val").endswith(f"{alias}_test.txt")


def test_a_missing_modality_names_every_name_tried_or_is_left_out(kit, tmp_path):
  for split in ("train", "val"):
    (kit.root / "labels" / f"clipart_{split}.txt").unlink()
  with pytest.raises(DataError, match=re.escape("no label file for clp/train: tried "
                                                "clp_train.txt, clipart_train.txt, "
                                                "clip_art_train.txt")):
    build.build_dataset(tmp_path / "out", _kit_config(kit), progress=False)
  assert not (tmp_path / "out" / "manifest.json").exists()
  manifest = build.build_dataset(tmp_path / "out", _kit_config(kit, modalities=("nat", "ldr")),
                                 progress=False)
  assert set(manifest["modalities"]) == {"nat", "ldr"}


def test_explicit_label_files_override_the_names(kit, tmp_path):
  lists = kit.root / "lists"
  lists.mkdir()
  for split in ("train", "val"):
    (kit.root / "labels" / f"linedrawings_{split}.txt").rename(lists / f"sketch-{split}.lst")
  config = _kit_config(kit, modalities=("nat", "ldr"),
                       cmplaces_label_files="ldr=lists/sketch-train.lst:lists/sketch-val.lst")
  manifest = build.build_dataset(tmp_path / "out", config, progress=False)
  used = manifest["build"]["cmplaces"]["label_files"]
  assert used["ldr/train"] == str(lists / "sketch-train.lst")
  assert used["nat/val"] == str(kit.places205 / "val_places205.csv")
  assert manifest["modalities"]["ldr"]["val"]["count"] == 3 * kit.counts["ldr"]["val"]
  with pytest.raises(ValueError, match="--cmplaces_label_files: expected MOD=TRAIN_FILE:VAL"):
    build.build_dataset(tmp_path / "o2", _kit_config(kit, cmplaces_label_files="ldr=a.txt"))
  with pytest.raises(ValueError, match="ldr's train file .* does not exist"):
    build.build_dataset(tmp_path / "o3", _kit_config(
        kit, cmplaces_label_files="ldr=nope.txt:nope.txt"))


def test_a_csv_label_that_disagrees_with_categories_txt_is_an_error(kit, tmp_path):
  csv = kit.places205 / "train_places205.csv"
  lines = csv.read_text().splitlines()
  lines[1] = lines[1].rsplit(" ", 1)[0] + " 1"  # a kitchen image labelled 1 (abbey)
  csv.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError) as caught:
    build.build_dataset(tmp_path / "out", _kit_config(kit, skip_bad=True), progress=False)
  message = str(caught.value)
  assert message.startswith(f"{csv}, line 2: label 1 is 'abbey' in labels/categories.txt")
  assert "directory of 'kitchen' (label 0 there)" in message


def test_a_missing_file_names_the_label_file_line_and_both_candidates(kit, tmp_path):
  missing = next((kit.files_root / "data" / "clipart").rglob("*.png"))
  missing.unlink()
  relpath = missing.relative_to(kit.files_root).as_posix()
  with pytest.raises(DataError) as caught:
    build.build_dataset(tmp_path / "out", _kit_config(kit), progress=False)
  message = str(caught.value)
  assert str(kit.root / "labels") in message and ", line " in message
  assert f"{kit.root / relpath} and {kit.files_root / relpath}" in message


def test_nat_train_per_category_caps_places205_by_a_seeded_choice(kit, tmp_path):
  config = _kit_config(kit, modalities=("nat",), nat_train_per_category=5)
  first = build.build_dataset(tmp_path / "a", config, progress=False)
  nat = first["modalities"]["nat"]
  assert nat["train"]["label_counts"] == [4, 4, 4] and nat["dev"]["label_counts"] == [1, 1, 1]
  again = build.build_dataset(tmp_path / "b", config, progress=False)
  assert again["modalities"]["nat"]["dev"]["example_ids"] == nat["dev"]["example_ids"]


def test_places205_flags_are_checked_before_any_work(kit, tmp_path):
  with pytest.raises(ValueError, match="give both split files"):
    _kit_config(kit, places205_val_csv="").validated()
  with pytest.raises(ValueError, match="--places205_root: required"):
    _kit_config(kit, places205_root="").validated()
  with pytest.raises(ValueError, match="--cmplaces_files_root: only used with --source=cmp"):
    BuildConfig(cmplaces_files_root="x").validated()


def _python(*args, timeout=600):
  result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=paths.REPO_ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
def test_the_published_layout_builds_and_trains_quick_flags_end_to_end(kit, tmp_path):
  data_dir = tmp_path / "data"
  stdout = _python(
      "-m", "cmp_tf.build_data", "--source=cmplaces", f"--cmplaces_root={kit.root}",
      f"--cmplaces_files_root={kit.files_root}",
      f"--places205_train_csv={kit.places205 / 'train_places205.csv'}",
      f"--places205_val_csv={kit.places205 / 'val_places205.csv'}",
      f"--places205_root={kit.places205 / 'images256'}", f"--data_dir={data_dir}",
      "--image_size=32", "--dev_per_category=1", "--workers=1", "--report=false")
  assert f"dsc/train: {kit.root / 'labels' / 'text_train.txt'}" in stdout
  manifest = json.loads((data_dir / "manifest.json").read_text())
  assert manifest["categories"] == list(cmplaces_fixture.CATEGORIES)
  assert manifest["build"]["cmplaces"]["label_files"]["clp/val"] == str(
      kit.root / "labels" / "clipart_val.txt")
  for m in mod_lib.ALL_MODALITIES:
    assert manifest["modalities"][m]["dev"]["count"] == 3
  ids = manifest["modalities"]["dsc"]["dev"]["example_ids"]
  assert all(i.startswith("dsc/train/data/text/") for i in ids)
  run_dir = tmp_path / "run"
  _python("-m", "cmp_tf.train", "--flagfile=configs/quick.flags", f"--data_dir={data_dir}",
          f"--run_dir={run_dir}", f"--cache_dir={tmp_path / 'cache'}", "--source_steps=20",
          "--prior_samples=30", "--gmm_components=2", "--max_stage_steps=10", "--dev_every=5",
          "--batch_size=4", "--noexport")
  state = json.loads((run_dir / "run.json").read_text())
  assert state["status"] == "complete" and len(state["stages"]) == 2
  assert (run_dir / "eval" / "results.json").is_file()
