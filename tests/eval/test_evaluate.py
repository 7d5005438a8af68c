"""The evaluation command: features and .npz files, table rows, tables.md/results.json."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.eval import embeddings, page, retrieval, rows, tables, zero_shot
from cmp_tf.eval import evaluation as evaluate

# === Fast: files, rows and errors without a network ===


def _feature_set(rng, labels, dim=6, outputs=("pool5", "fc6", "fc7", "logits")):
  labels = np.asarray(labels, dtype=np.int64)
  centres = rng.normal(size=(labels.max() + 1, dim))
  return embeddings.FeatureSet(
      {o: (centres[labels] + rng.normal(scale=0.8, size=(len(labels), dim))).astype(np.float32)
       for o in outputs},
      labels, np.array([f"x/{i}" for i in range(len(labels))]))


def _val_sets(seed=0, per_class=3, num_classes=4):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), per_class)
  return {m: _feature_set(rng, labels, dim=num_classes) for m in mod_lib.ALL_MODALITIES}


def test_npz_round_trip_is_atomic(tmp_path):
  path = embeddings.npz_path(tmp_path, "fc7", "nat")
  features = np.arange(6, dtype=np.float32).reshape(3, 2)
  embeddings.save_npz(path, features, [2, 0, 1], ["a", "b", "c"])
  loaded, labels, ids = embeddings.load_npz(path)
  assert loaded.dtype == np.float32 and np.array_equal(loaded, features)
  assert labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]
  assert ids.tolist() == ["a", "b", "c"]
  assert os.listdir(os.path.dirname(path)) == ["nat.npz"]


def test_npz_errors_name_the_file(tmp_path):
  with pytest.raises(ValueError, match="inconsistent shapes"):
    embeddings.save_npz(str(tmp_path / "a.npz"), np.zeros((3, 2)), [0, 1], ["a", "b", "c"])
  np.savez(tmp_path / "b.npz", features=np.zeros((2, 2)))
  with pytest.raises(ValueError, match=r"b\.npz: missing arrays \['labels', 'example_ids'\]"):
    embeddings.load_npz(str(tmp_path / "b.npz"))
  with pytest.raises(FileNotFoundError, match="c.npz"):
    embeddings.load_npz(str(tmp_path / "c.npz"))


def test_saved_sets_are_reused_only_for_the_same_weights(tmp_path):
  sets = _val_sets()
  index = {"weights_digest": "abc", "split": "val"}
  embeddings.save_sets(tmp_path, sets)
  embeddings.write_index(tmp_path, {**index, "modalities": list(sets),
                                      "outputs": ["fc7", "logits"]})
  cached = embeddings.cached_sets(tmp_path, index, ["nat", "dsc"], ["fc7"])
  assert np.array_equal(cached["dsc"].features["fc7"], sets["dsc"].features["fc7"])
  assert embeddings.cached_sets(tmp_path, {**index, "weights_digest": "xyz"}, ["nat"],
                                  ["fc7"]) is None
  assert embeddings.cached_sets(tmp_path, index, ["nat"], ["pool5"]) is None


def test_retrieval_rows_are_the_metric_functions():
  val = _val_sets()
  got, scores = rows.retrieval_rows(val, layers=("pool5", "fc7"), num_queries=7, seed=3)
  expected = retrieval.cross_modal_retrieval({m: s.features["fc7"] for m, s in val.items()},
                                             {m: s.labels for m, s in val.items()},
                                             num_queries=7, seed=3)
  assert set(got["table1"]) == set(rows.RETRIEVAL_PAIRS)
  for pair, score in expected.items():
    assert got["table1"][pair] == score["map"]
    assert got["table2"][pair] == score["p@10"]
  assert got["table3"]["fc7"] == pytest.approx(np.mean([s["map"] for s in expected.values()]))
  assert set(got["table3"]) == {"pool5", "fc7"} and set(scores) == {"pool5", "fc7"}


def test_missing_modalities_leave_empty_cells():
  val = {m: s for m, s in _val_sets().items() if m != mod_lib.DSC}
  got, _ = rows.retrieval_rows(val, layers=("fc7",))
  assert got["table1"][("dsc", "nat")] is None and got["table1"][("nat", "clp")] is not None
  assert got["table3"] == {"fc7": None}  # a mean needs all 20 pairs


def test_zero_shot_rows_and_chance():
  val = _val_sets(per_class=4)
  heldout = np.array([1, 3])
  got, _ = rows.zero_shot_rows(val, heldout)
  for m in zero_shot.ZERO_SHOT_MODALITIES:
    for protocol, table in rows.TABLE4_BY_PROTOCOL.items():
      assert got[table][m] == zero_shot.zero_shot_accuracy(val[m].features["logits"],
                                                           val[m].labels, heldout, protocol)
  assert set(got["table5"]) == set(rows.ZERO_SHOT_PAIRS)
  chance = rows.chance_levels(val, num_classes=4, heldout_labels=heldout)
  n = 4 * 4  # targets per pair: 4 classes of 4 examples
  assert chance["table1"] == pytest.approx(retrieval.random_ranking_ap(4, n))
  assert chance["table2"] == pytest.approx(0.25) and chance["table4"] == 0.25
  assert chance["table4_conventional"] == 0.5
  assert chance["table5"] == pytest.approx(retrieval.random_ranking_ap(4, 8))


def test_subspace_alignment_rows_cap_the_subspace_and_drop_heldout_training_data():
  rng = np.random.default_rng(1)
  val = _val_sets()
  train = {m: _feature_set(rng, np.repeat(np.arange(4), 5), dim=4, outputs=("fc7",))
           for m in mod_lib.ALL_MODALITIES}
  got, _, used = rows.sa_retrieval_rows(val, train, n_components=100)
  assert set(used.values()) == {4} and all(v is not None for v in got["table1"].values())
  heldout = np.array([2])
  dropped = rows.without_heldout(train, heldout)
  assert 2 in dropped["nat"].labels and 2 not in dropped["clp"].labels
  zs, _, _ = rows.sa_zero_shot_rows(val, train, heldout, n_components=3)
  for table in ("table4", "table4_conventional"):
    assert all(0 <= zs[table][m] <= 1 for m in zero_shot.ZERO_SHOT_MODALITIES)
  assert zs["table5"][("clp", "dsc")] is not None


def test_rows_json_round_trip_and_tables():
  val = _val_sets()
  got, _ = rows.retrieval_rows(val, layers=("fc6", "fc7"))
  merged = {}
  for table, row in got.items():
    tables.add_row(merged, table, "M", row)
  back = tables.rows_from_json(json.loads(json.dumps(tables.rows_to_json(merged))))
  assert back == merged
  built = tables.build_tables(back, rows.chance_levels(val, num_classes=4))
  assert [t.title for t in built] == [tables.TITLES[t] for t in ("table1", "table2", "table3")]
  with pytest.raises(ValueError, match="two rows named 'M'"):
    tables.add_row(merged, "table1", "M", {})


@pytest.mark.parametrize("state, message", [
    (None, "is not a run directory"),
    ({"status": "running", "stages": [{"status": "complete"}],
      "recipe": {"stages": [{}, {}]}}, "not finished .* 1 of 2 stages complete"),
    ({"status": "complete"}, "has no spec.json"),
])
def test_unfinished_runs_are_refused_before_any_work(tmp_path, state, message):
  if state is not None:
    (tmp_path / "run.json").write_text(json.dumps(state))
  with pytest.raises(finished_run.RunError, match=message):
    evaluate.evaluate_run(tmp_path)
  with pytest.raises(finished_run.RunError, match="no such directory"):
    finished_run.check_finished(tmp_path / "missing")


def test_source_evaluation_needs_a_source_network(tmp_path):
  (tmp_path / "run.json").write_text(json.dumps({"status": "complete", "source": None}))
  with pytest.raises(finished_run.RunError, match="did not start from a source network"):
    evaluate.evaluate_source(tmp_path)
  with pytest.raises(finished_run.RunError, match="not a cached source network"):
    evaluate.evaluate_source(tmp_path / "nowhere")


def test_cli_refuses_a_directory_that_is_not_a_run():
  result = subprocess.run([sys.executable, "-m", "cmp_tf.evaluate", "--run_dir=/nonexistent/run"],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "cmp_tf.evaluate: error: --run_dir: no such directory: /nonexistent/run" in result.stderr


# === Slow: a tiny zero-shot run trained and evaluated end to end ===


@pytest.fixture(scope="module")
def tiny_run(tiny_data_dir, tmp_path_factory):
  """A zero-shot BL-Individual run of alexnet_tiny on the tiny dataset, trained for 2 steps."""
  from cmp_tf.training import config as config_lib
  from cmp_tf.training import runner
  root = tmp_path_factory.mktemp("tiny_run")
  config = config_lib.TrainConfig(
      method="bl_individual", zero_shot=True, data_dir=tiny_data_dir,
      run_dir=str(root / "run"), cache_dir=str(root / "cache"), image_variant="alexnet_tiny",
      steps=2, source_steps=2, batch_size=2, source_batch_size=4, checkpoint_every=2,
      jit_compile=False, strategy="default", evaluate=False, export=False)
  return runner.run_training(config, progress=False)


def _recomputed_retrieval(features_dir, layer, pairs, **kwargs):
  loaded = {m: embeddings.load_npz(embeddings.npz_path(features_dir, layer, m))
            for m in mod_lib.ALL_MODALITIES}
  return {pair: retrieval.retrieval_scores(loaded[pair[0]][0], loaded[pair[0]][1],
                                           loaded[pair[1]][0], loaded[pair[1]][1], **kwargs)
          for pair in pairs}


@pytest.mark.slow
def test_evaluate_run_end_to_end(tiny_run, tiny_data_dir):
  results = evaluate.evaluate_run(tiny_run, subspace_alignment=True, progress=False)
  eval_dir = os.path.join(tiny_run, "eval")
  features_dir = os.path.join(eval_dir, "features")
  manifest = json.load(open(os.path.join(tiny_data_dir, "manifest.json")))

  for output in ("pool5", "fc6", "fc7", "logits"):
    for m in mod_lib.ALL_MODALITIES:
      feats, labels, ids = embeddings.load_npz(embeddings.npz_path(features_dir, output, m))
      count = manifest["modalities"][m]["val"]["count"]
      assert feats.shape[0] == count and feats.dtype == np.float32
      assert np.all(np.isfinite(feats)) and labels.dtype == np.int64
      assert len(set(ids.tolist())) == count
      assert np.bincount(labels, minlength=6).tolist() == manifest["modalities"][m]["val"][
          "label_counts"]
      if output == "logits":
        assert feats.shape[1] == len(manifest["categories"])
  for m in mod_lib.ALL_MODALITIES:
    _, labels, _ = embeddings.load_npz(os.path.join(eval_dir, "features_train", "fc7",
                                                      f"{m}.npz"))
    assert len(labels) == manifest["modalities"][m]["train"]["count"]

  markdown = open(os.path.join(eval_dir, "tables.md")).read()
  for number in (1, 2, 3, 5):
    assert f"**Table {number}:" in markdown
  assert "**Table 4 (conventional protocol" in markdown
  assert "**Table 4 (generalized protocol" in markdown
  assert markdown.count("Chance level:") == 6
  assert "Stage 0 (finetune): " in markdown and "drift from source: fc6 " in markdown
  assert "| BL-Individual |" in markdown and "| Subsp. Align. + PlacesNet Finetune |" in markdown

  saved = json.load(open(os.path.join(eval_dir, "results.json")))
  assert saved["zero_shot"] is True and saved["method"] == "bl_individual"
  assert saved["rows"] == results["rows"]
  row = saved["rows"]["table1"]["BL-Individual"]
  recomputed = _recomputed_retrieval(features_dir, "fc7", rows.RETRIEVAL_PAIRS)
  for pair, score in recomputed.items():
    assert row[rows.pair_key(pair)] == pytest.approx(score["map"], abs=1e-12)
    assert saved["rows"]["table2"]["BL-Individual"][rows.pair_key(pair)] == pytest.approx(
        score["p@10"], abs=1e-12)
  pool5 = _recomputed_retrieval(features_dir, "pool5", rows.RETRIEVAL_PAIRS)
  assert saved["rows"]["table3"]["BL-Individual"]["pool5"] == pytest.approx(
      np.mean([s["map"] for s in pool5.values()]))

  heldout = zero_shot.heldout_label_indices(manifest["categories"],
                                            manifest["heldout_categories"])
  for m in zero_shot.ZERO_SHOT_MODALITIES:
    logits, labels, _ = embeddings.load_npz(embeddings.npz_path(features_dir, "logits", m))
    assert saved["rows"]["table4"]["BL-Individual"][m] == zero_shot.zero_shot_accuracy(
        logits, labels, heldout)
    assert saved["rows"]["table4_conventional"]["BL-Individual"][m] == (
        zero_shot.zero_shot_accuracy(logits, labels, heldout, zero_shot.CONVENTIONAL))
  assert all(v is not None for v in saved["rows"]["table5"]["BL-Individual"].values())
  assert saved["chance"]["table4"] == pytest.approx(1 / 6)
  assert set(saved["rows"]["table4"]) == {"BL-Individual", "Subsp. Align. + PlacesNet Finetune"}

  # The page: Figure 5 and the matrices beside it, the heatmap showing Table 1's numbers.
  page_html = open(os.path.join(eval_dir, "index.html")).read()
  for png in ("figure5.png", "map_matrices.png"):
    assert f'src="{png}"' in page_html
    with Image.open(os.path.join(eval_dir, png)) as image:
      image.load()
      assert image.width > 200
  shown = page.matrices(saved, list(mod_lib.ALL_MODALITIES))
  assert list(shown) == ["pool5", "fc6", "fc7"]
  for pair in rows.RETRIEVAL_PAIRS:
    i, j = (mod_lib.ALL_MODALITIES.index(m) for m in pair)
    assert shown["fc7"][i, j] == pytest.approx(100 * row[rows.pair_key(pair)])
  assert np.isnan(np.diag(shown["fc7"])).all()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromedriver") is None,
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_page_opens_in_headless_chromium_without_errors(tiny_run):
  from tests import page_browser

  evaluate.evaluate_run(tiny_run, layers=["fc7"], progress=False)
  opened = page_browser.open_page(os.path.join(tiny_run, "eval", "index.html"))
  assert opened["errors"] == [] and opened["broken_images"] == []
  assert opened["images"] >= 2 and "Evaluation of BL-Individual" in opened["title"]


@pytest.mark.slow
def test_reevaluation_reuses_saved_features(tiny_run):
  evaluate.evaluate_run(tiny_run, layers=["fc7"], progress=False)
  npz = os.path.join(tiny_run, "eval", "features", "fc7", "nat.npz")
  before = os.stat(npz).st_mtime_ns
  results = evaluate.evaluate_run(tiny_run, layers=["fc7"], num_queries=5, seed=1,
                                  progress=False)
  assert os.stat(npz).st_mtime_ns == before
  assert results["protocol"]["num_queries"] == 5
  assert all(s["num_queries"] == 5 for s in results["details"]["retrieval"]["fc7"].values())
  assert list(results["rows"]["table3"]["BL-Individual"]) == ["fc7"]


@pytest.mark.slow
def test_evaluate_source_network(tiny_run, tmp_path):
  results = evaluate.evaluate_source(tiny_run, out_dir=tmp_path, progress=False)
  sa = results["rows"]["table1"]["Subsp. Align. + PlacesNet"]
  assert sa["dsc->nat"] is None and sa["nat->clp"] is not None
  assert results["rows"]["table4"]["BL-PlacesNet"]["dsc"] is None
  assert 0 <= results["rows"]["table4"]["BL-PlacesNet"]["clp"] <= 1
  assert set(results["rows"]) == {"table1", "table2", "table4", "table4_conventional", "table5"}
  feats, _, _ = embeddings.load_npz(embeddings.npz_path(tmp_path / "features", "fc7", "ldr"))
  assert feats.ndim == 2
  assert "**Table 5:" in (tmp_path / "tables.md").read_text()


@pytest.mark.slow
def test_damaged_run_files_are_named_without_a_traceback(tiny_run, tmp_path):
  import shutil
  for name, damage, message in (
      ("final.weights.h5", lambda p: p.write_bytes(p.read_bytes()[:300]),
       "final.weights.h5 is not a readable weights file"),
      ("run.json", lambda p: p.write_text('{"status": "comp'), "run.json is not valid JSON")):
    run = tmp_path / name.split(".")[0]
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval", "ckpt", "logs"))
    damage(run / name)
    result = subprocess.run([sys.executable, "-m", "cmp_tf.evaluate", f"--run_dir={run}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cmp_tf.evaluate: error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
