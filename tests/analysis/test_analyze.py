"""The analyze command: activations, bad input, index.html, end to end on a tiny run."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cmp_tf import finished_run
from cmp_tf import html_page as html
from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import run_analysis as analyze

# === Fast: input checks and the page ===


def test_parts_are_checked_and_put_in_order():
  assert analyze.check_parts("alignment,invariance") == ("invariance", "alignment")
  assert analyze.check_parts(["units", "INVERSION"]) == ("units", "inversion")
  with pytest.raises(ValueError, match=r"--parts: expected some of .* got tsne"):
    analyze.check_parts("invariance,tsne")
  with pytest.raises(ValueError, match="--parts: .* got none"):
    analyze.check_parts("")


def test_bad_input_fails_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="--parts"):
    analyze.analyze_run(tmp_path / "missing", parts="tsne")
  with pytest.raises(ValueError, match="--max_per_modality"):
    analyze.analyze_run(tmp_path / "missing", max_per_modality=2)
  with pytest.raises(ValueError, match="options: for parts units"):
    analyze.analyze_run(tmp_path / "missing", parts="alignment", options={"units": {}})
  with pytest.raises(ValueError, match="--run_dir: no such directory"):
    analyze.analyze_run(tmp_path / "missing")
  with pytest.raises(ValueError, match=r"--run_dir: .* is not a run directory \(no run.json\)"):
    analyze.analyze_run(tmp_path)
  (tmp_path / "run.json").write_text(json.dumps({"status": "running", "stages": []}))
  with pytest.raises(ValueError, match="--run_dir: the run in .* is not finished"):
    analyze.analyze_run(tmp_path)
  assert os.listdir(tmp_path) == ["run.json"]


def test_current_result_needs_the_same_weights_and_settings(tmp_path):
  path = str(tmp_path / "alignment.json")
  settings = analyze.settings_of(1000, 0)
  saved = {"format_version": analyze.FORMAT_VERSION, "weights_digest": "abc",
           "settings": settings, "layers": {}}
  tmp_path.joinpath("alignment.json").write_text(json.dumps(saved))
  assert analyze.current_result(path, "abc", settings) == saved
  assert analyze.current_result(path, "abd", settings) is None
  assert analyze.current_result(path, "abc", analyze.settings_of(1000, 1)) is None
  assert analyze.current_result(str(tmp_path / "none.json"), "abc") is None
  tmp_path.joinpath("alignment.json").write_text("{not json")
  assert analyze.current_result(path, "abc") is None


def test_page_escapes_text_and_refuses_missing_pictures(tmp_path):
  (tmp_path / "a.png").write_bytes(b"png")
  section = html.Section("Numbers <&>", html.table(["layer", "value"], [["fc7", 0.12345],
                                                                        ["pool5", None]])
                         + html.figure("a.png", "caption"), images=("a.png",))
  path = html.write_page(str(tmp_path), "Title <b>", ["line & more"], [section])
  text = open(path, encoding="utf-8").read()
  assert "Title &lt;b&gt;" in text and "Numbers &lt;&amp;&gt;" in text
  assert "<td>0.123</td>" in text and "&ndash;" in text and 'src="a.png"' in text
  missing = html.Section("More", html.figure("b.png"), images=("b.png",))
  with pytest.raises(FileNotFoundError, match="b.png"):
    html.write_page(str(tmp_path), "Title", [], [section, missing])


def _saved(probe, fractions, objects):
  invariance = {"probe": {layer: {"accuracy": a, "chance": 0.2} for layer, a in probe.items()}}
  alignment = {"layers": {layer: {"fraction": f, "chance_fraction": 0.0,
                                  "detected_objects": {o: 1 for o in objects},
                                  "within_category": {"fraction": f / 2}}
                          for layer, f in fractions.items()}}
  return invariance, alignment


def test_reproduction_compares_methods_by_probe_and_alignment():
  from cmp_tf.experiments import report
  c = report.analysis_row("C: Tune + StatReg (GMM)", *_saved(
      {"pool5": 0.9, "fc6": 0.5, "fc7": 0.4}, {"pool5": 0.1, "fc7": 0.25},
      ["bed", "sink", "tree", "car"]))
  assert c["probe"] == {"pool5": 0.9, "fc6": 0.5, "fc7": 0.4} and c["probe_chance"] == 0.2
  assert c["aligned"] == {"pool5": 0.1, "fc7": 0.25}
  assert c["aligned_within"] == {"pool5": 0.05, "fc7": 0.125}
  assert c["objects"]["fc7"] == ["bed", "sink", "tree"]
  base = report.analysis_row("BL-Individual", *_saved(
      {"pool5": 1.0, "fc6": 0.99, "fc7": 0.98}, {"pool5": 0.0, "fc7": 0.0}, []))
  probe_only = report.analysis_row("A: Tune", _saved({"fc7": 0.6}, {}, [])[0], None)
  markdown = report.analysis_markdown([c, probe_only, base])
  lines = [line for line in markdown.splitlines() if line.startswith("| ")]
  assert lines[0] == ("| Method | probe pool5 | probe fc6 | probe fc7 | aligned pool5 | "
                      "aligned fc7 | within categories pool5 | within categories fc7 | "
                      "objects (fc7) |")
  assert lines[1] == "| BL-Individual | 100.0 | 99.0 | 98.0 | 0.0 | 0.0 | 0.0 | 0.0 | - |"
  assert lines[2] == "| A: Tune | - | - | 60.0 | - | - | - | - | - |"
  assert lines[3] == ("| C: Tune + StatReg (GMM) | 90.0 | 50.0 | 40.0 | 10.0 | 25.0 | 5.0 | "
                      "12.5 | bed, sink, tree |")
  assert "chance 20.0" in markdown and "33% for A: Tune vs 25% for BL-Individual" in markdown


# === Slow: a tiny run trained once, analysed end to end ===


@pytest.mark.slow
def test_activations_match_evaluation_features(tiny_run):
  from cmp_tf.analysis import activations as activations_lib
  from cmp_tf.eval import embeddings
  run = finished_run.load_run(tiny_run)
  acts = activations_lib.run_activations(run, max_examples=None, keep_inputs=True)
  assert list(acts) == list(mod_lib.ALL_MODALITIES)
  h, w, c = run.spec.pool5_shape
  for modality, a in acts.items():
    n = len(a)
    assert a.pool5_maps.shape == (n, h, w, c) and a.pool5.shape == (n, c)
    assert np.array_equal(a.pool5, a.pool5_maps.max(axis=(1, 2)))
    assert a.features("pool5").shape == (n, h * w * c) and a.units("fc7").shape == (n, 32)
    assert len(a.object_names) == len(a.object_boxes) == len(a.texts) == n and a.has_objects
    assert all(b.shape == (len(o), 4) for o, b in zip(a.object_names, a.object_boxes))
    expected = embeddings.extract(run.model, run.data_dir, modality, outputs=("pool5", "fc7"))
    assert a.example_ids.tolist() == expected.example_ids.tolist()
    np.testing.assert_allclose(a.features("pool5"), expected.features["pool5"], atol=1e-5)
    np.testing.assert_allclose(a.fc7, expected.features["fc7"], atol=1e-5)
  assert acts["nat"].inputs.shape == (len(acts["nat"]), 32, 32, 3)
  assert acts["dsc"].inputs.shape == (len(acts["dsc"]), 512)
  assert all(t.strip() for t in acts["dsc"].texts) and acts["nat"].texts[0] == ""
  subset = activations_lib.run_activations(run, modalities="nat,dsc", max_examples=5, seed=1)
  assert list(subset) == ["nat", "dsc"] and len(subset["nat"]) == 5
  assert set(subset["nat"].example_ids) <= set(acts["nat"].example_ids)
  assert subset["nat"].inputs is None


def _linked_files(index_path):
  text = open(index_path, encoding="utf-8").read()
  return sorted(set(re.findall(r'(?:src|href)="([^"#]+)"', text)))


@pytest.mark.slow
def test_analyze_run_writes_every_part_and_a_page_that_links_them(tiny_run, tmp_path):
  out = tmp_path / "analysis"
  result = analyze.analyze_run(tiny_run, out_dir=str(out), max_per_modality=20, seed=0,
                               options={"inversion": {"steps": 3, "max_train_examples": 16}},
                               progress=False)
  assert set(result["parts"]) == set(analyze.PARTS)
  for name in ("invariance.json", "alignment.json", "tsne_modality.png", "tsne_category.png",
               "index.html", "units/units.json", "inversion/inversion.json"):
    assert (out / name).is_file(), name
  invariance = json.loads((out / "invariance.json").read_text())
  assert invariance["examples"] == {m: 20 for m in mod_lib.ALL_MODALITIES}
  assert set(invariance["probe"]) == {"pool5", "fc6", "fc7"}
  assert all(0 <= p["accuracy"] <= 1 and p["chance"] == 0.2
             for p in invariance["probe"].values())
  alignment = json.loads((out / "alignment.json").read_text())
  assert alignment["modalities"] == list(mod_lib.ALL_MODALITIES)  # DSC records carry objects
  assert alignment["layers"]["pool5"]["num_units"] == 16
  assert alignment["layers"]["fc7"]["num_units"] == 32
  for name in ("invariance.json", "alignment.json"):
    assert analyze.current_result(str(out / name), alignment["weights_digest"],
                                  analyze.settings_of(20, 0)) is not None
  linked = _linked_files(result["index"])
  assert "tsne_modality.png" in linked and "inversion/inversion.png" in linked
  assert any(f.startswith("units/pool5/") for f in linked)
  assert all((out / f).is_file() for f in linked)
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]

  # A later run of one part keeps the other parts' current results on the page.
  again = analyze.analyze_run(tiny_run, out_dir=str(out), max_per_modality=20,
                              parts="alignment", progress=False)
  assert set(again["parts"]) == {"alignment"}
  assert _linked_files(again["index"]) == linked


@pytest.mark.slow
def test_cli_analyses_into_the_run_directory_and_reports_bad_flags(tiny_run):
  command = [sys.executable, "-m", "cmp_tf.analyze", f"--run_dir={tiny_run}"]
  bad = subprocess.run(command + ["--parts=tsne"], capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and "--parts: expected some of" in bad.stderr
  done = subprocess.run(command + ["--parts=alignment", "--max_per_modality=10"],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  saved = json.loads(open(os.path.join(tiny_run, "analysis", "alignment.json")).read())
  assert saved["settings"]["max_per_modality"] == 10
  assert saved["examples"] == {m: 10 for m in mod_lib.ALL_MODALITIES}
  assert os.path.isfile(os.path.join(tiny_run, "analysis", "index.html"))


@pytest.mark.slow
def test_ensure_analysis_keeps_results_of_the_same_weights(tiny_run):
  first, status = analyze.ensure_analysis(tiny_run, max_per_modality=12, seed=3)
  assert status == "analysed" and set(first) == {"invariance", "alignment"}
  path = os.path.join(tiny_run, "analysis", "alignment.json")
  written = os.stat(path).st_mtime_ns
  again, status = analyze.ensure_analysis(tiny_run, max_per_modality=12, seed=3)
  assert status == "kept" and os.stat(path).st_mtime_ns == written
  assert again["alignment"]["layers"] == json.loads(json.dumps(first["alignment"]["layers"]))
  with pytest.raises(ValueError, match="not units"):
    analyze.ensure_analysis(tiny_run, parts="units")
