"""SynthCMP at Places205 scale: the procedural categories, their descriptions, the build."""

import json
import re

import numpy as np
import pytest

from cmp_tf import paths
from cmp_tf.data import build, plan, synthcmp
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data.build_config import TINY_FLAGFILE
from cmp_tf.data.synthcmp import places205
from cmp_tf.errors import DataError
from tests.commands import flagfile_config, run_command


@pytest.fixture(scope="module")
def grammar():
  return synthcmp.load_grammar(places205=True)


def _distribution(category):
  return tuple(sorted((e.object, e.p, e.count) for e in category.entries)), tuple(
      (layer.object, layer.bottom) for layer in category.layers)


def test_all_205_categories_in_places205_order(grammar):
  names = synthcmp.grammar.load_places205()
  assert list(grammar.categories) == sorted(names, key=names.get)
  hand = synthcmp.load_grammar()
  for name, category in hand.categories.items():  # the hand-written ones as they are
    assert _distribution(grammar.category(name)) == _distribution(category)


def test_procedural_categories_are_distinct_and_deterministic(grammar):
  distributions = {name: _distribution(c) for name, c in grammar.categories.items()}
  assert len(set(distributions.values())) == 205
  objects = {name: frozenset(e.object for e in c.entries) for name, c in grammar.categories.items()}
  assert len(set(objects.values())) > 190  # recognisable from co-occurrence, not only priors
  again = synthcmp.load_grammar(places205=True)
  assert {n: _distribution(c) for n, c in again.categories.items()} == distributions
  # one category's draws depend on its name only: another entry list gives the same scene
  entry = json.loads(paths.shipped(places205.SCENES_FILE).read_text())["categories"]["abbey"]
  raw = places205.raw_category("abbey", entry, 0, "outdoor", grammar.objects)
  assert raw == places205.raw_category("abbey", entry, 0, "outdoor", grammar.objects)


def test_procedural_scenes_render_and_descriptions_never_name_them(grammar):
  rng = np.random.default_rng(0)
  for label, name in enumerate(grammar.category_names):
    banned = grammar.category(name).banned
    for seed in rng.integers(0, 1000, size=3):
      record = synthcmp.render_record(grammar, "dsc", "train", name, label, 0, int(seed), 32)
      assert not banned.search(record.text), (name, record.text)
      base = name.split("/")[0].replace("_", "[ _]")
      assert not re.search(rf"\b{base}\b", record.text, re.IGNORECASE), (name, record.text)
    image = synthcmp.render_record(grammar, "nat", "val", name, label, 0, 0, 32)
    assert image.image_png and image.boxes().shape[0] >= 1


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["abbey"].update({"objects": ["building", "unicorn"]}), r"unknown object 'unicorn'"),
    (lambda c: c["abbey"].update({"objects": ["grass"]}), r"'grass' only fills bands"),
    (lambda c: c["abbey"].update({"bands": []}), r"category 'abbey'.bands"),
    (lambda c: c["abbey"].update({"activities": ["visit the abbey"]}),
     r"'visit the abbey' names the category"),
    (lambda c: c.update({"kitchen": c["abbey"]}), r"'kitchen' is written by hand"),
    (lambda c: c.pop("yard"), r"1 Places205 categories have no scene: \['yard'\]"),
    (lambda c: c["abbey"].update({"colour": "red"}), r"unknown key\(s\) colour"),
])
def test_scene_errors_name_file_and_entry(tmp_path, edit, message):
  raw = json.loads(paths.shipped(places205.SCENES_FILE).read_text())
  edit(raw["categories"])
  path = tmp_path / "scenes.json"
  path.write_text(json.dumps(raw))
  with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
    synthcmp.load_grammar(places205=True, scenes_path=path)


def test_build_at_205_categories(tmp_path):
  config = flagfile_config(
      paths.CONFIGS_DIR / "data_places205.flags", image_size=16, nat_train_per_category=3,
      train_per_category=3, val_per_category=2, dev_per_category=1, workers=1, report=False)
  manifest = build.build_dataset(tmp_path / "p205", config, progress=False)
  assert len(manifest["categories"]) == 205
  assert manifest["heldout_categories"] == sorted(plan.read_places205_heldout(),
                                                  key=manifest["categories"].index)
  for splits in manifest["modalities"].values():
    assert splits["val"]["label_counts"] == [2] * 205
    assert splits["dev"]["label_counts"] == [1] * 205
  assert manifest_lib.read_manifest(tmp_path / "p205")["categories"] == manifest["categories"]


def test_synthcmp_categories_flag_is_checked(tmp_path, capsys):
  result = run_command("cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}",
                       f"--data_dir={tmp_path / 'o'}", "--synthcmp_categories=sun397")
  assert result.returncode == 2
  assert "--synthcmp_categories: unknown set 'sun397'" in result.stderr
