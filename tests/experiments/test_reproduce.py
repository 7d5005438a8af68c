"""The reproduction command: training commands, merged tables, resuming, the tables."""

import json
import os
import shutil

import numpy as np
import pytest

from cmp_tf import paths
from cmp_tf.eval import rows as rows_lib
from cmp_tf.eval import tables
from cmp_tf.experiments import report as experiment_report
from cmp_tf.experiments import reproduce
from cmp_tf.training import recipes

# === Fast ===


def test_methods_are_checked_before_any_work(tmp_path):
  assert reproduce.parse_methods(["all"]) == list(recipes.METHOD_NAMES)
  assert reproduce.parse_methods(["paper"]) == list(recipes.PAPER_METHODS)
  assert reproduce.parse_methods(["c", "alignment"]) == ["c", *recipes.ALIGNMENT_METHODS]
  assert set(recipes.PAPER_METHODS) | set(recipes.ALIGNMENT_METHODS) == set(recipes.METHODS)
  assert reproduce.parse_methods(["a_tune", " bl_individual", "a_tune"]) == [
      "a_tune", "bl_individual"]
  with pytest.raises(ValueError, match=r"--methods: unknown \['c_tune'\]"):
    reproduce.parse_methods(["c_tune"])
  with pytest.raises(ValueError, match="--train_flagfiles: no such file"):
    reproduce.reproduce(tmp_path, methods=["a_tune"], train_flagfiles=[str(tmp_path / "x")])
  with pytest.raises(ValueError, match="--data_dir: .* has no manifest.json"):
    reproduce.reproduce(tmp_path, methods=["a_tune"], data_dir=str(tmp_path))
  assert not os.path.exists(tmp_path / "runs")


def test_train_command_is_the_train_entry_point(tmp_path):
  command = reproduce.train_command("c", True, "/o/runs/c_zeroshot",
                                    data_dir="/d", train_flagfiles=["/x.flags"], python="py")
  assert command == [
      "py", "-m", "cmp_tf.train", f"--flagfile={paths.CONFIGS_DIR / 'c.flags'}",
      "--flagfile=/x.flags", "--method=c", "--zero_shot",
      "--run_dir=/o/runs/c_zeroshot", "--noevaluate", "--noexport", "--data_dir=/d"]
  assert "--nozero_shot" in reproduce.train_command("a_tune", False, "r", python="py")


def test_every_method_has_its_shipped_flagfile():
  for method in recipes.METHOD_NAMES:
    lines = open(reproduce.method_flagfile(method)).read().split()
    assert f"--method={method}" in lines


def _results(rows, *, kind="run", fingerprint="f", chance=None, name="r"):
  return {"kind": kind, "run_dir": name, "manifest_fingerprint": fingerprint,
          "rows": tables.rows_to_json(rows), "num_classes": 10,
          "chance": chance or {"table1": 0.1, "table2": 0.1, "table3": 0.1, "table4": 0.1,
                               "table5": 0.2}}


def _table1_row(value, dsc_value=None):
  return {p: (dsc_value if p[0] == "dsc" and dsc_value is not None else value)
          for p in rows_lib.RETRIEVAL_PAIRS}


def test_merged_rows_follow_the_paper_order_and_settings():
  c = _results({"table1": {"C: Tune + StatReg (GMM)": _table1_row(0.2, 0.3)},
                "table4": {"C: Tune + StatReg (GMM)": {"clp": 0.9}}})
  bl = _results({"table1": {"BL-Individual": _table1_row(0.1, 0.05)},
                 "table3": {"BL-Individual": {"fc7": 0.1}}})
  c_zs = _results({"table1": {"C: Tune + StatReg (GMM)": _table1_row(0.5)},
                   "table4": {"C: Tune + StatReg (GMM)": {"clp": 0.4}}})
  source = _results({"table1": {"Subsp. Align. + PlacesNet": {("nat", "clp"): 0.3}},
                     "table4": {"BL-PlacesNet": {"clp": 0.2}}}, kind="source",
                    chance={"table1": 0.5, "table4": 0.1})
  rows = experiment_report.merge_rows([c, bl, source], [c_zs, source])
  assert list(rows["table1"]) == ["BL-Individual", "Subsp. Align. + PlacesNet",
                                  "C: Tune + StatReg (GMM)"]
  assert rows["table1"]["C: Tune + StatReg (GMM)"][("nat", "clp")] == 0.2  # not the zero-shot run
  assert list(rows["table4"]) == ["BL-PlacesNet", "C: Tune + StatReg (GMM)"]
  assert rows["table4"]["C: Tune + StatReg (GMM)"]["clp"] == 0.4
  assert experiment_report.merge_chance([source, c], [])["table1"] == 0.1  # a run's, all 5 modalities

  ratio = experiment_report.ratios(rows)
  assert ratio["mean_map"]["ours"] == pytest.approx((16 * 0.2 + 4 * 0.3) / (16 * 0.1 + 4 * 0.05))
  assert ratio["dsc_query_map"]["ours"] == pytest.approx(6.0)
  assert ratio["mean_map"]["paper"] == pytest.approx(11.9 / 6.1)
  markdown = experiment_report.comparison_markdown(rows)
  assert "| BL-Individual | 9.0 | 6.1 | - | 2.0 | - | 4.0 | 10.0 | 6.1 |" in markdown


def test_the_runs_of_a_reproduction_with_seeds_and_the_dsc_source_row():
  planned = reproduce.plan_runs(["bl_individual", "c"], seeds=[0, 1, 2], seed_methods=["c"])
  assert [(p.name, p.seed) for p in planned] == [
      ("bl_individual", 0), ("bl_individual_dsc_source", 0), ("c", 0), ("c_seed1", 1),
      ("c_seed2", 2), ("bl_individual_zeroshot", 0), ("c_zeroshot", 0)]
  dsc_source = planned[1]
  assert dsc_source.row == reproduce.DSC_SOURCE_ROW and not dsc_source.subspace_alignment
  assert planned[0].subspace_alignment
  command = reproduce.train_command("c", False, "r", seed=2,
                                    extra_flags=dsc_source.extra_flags, python="py")
  assert command[command.index("--seed=2") + 1] == "--dsc_upper_init=source"
  assert len(reproduce.plan_runs(["c"], zero_shot=False, seeds=[3, 4])) == 2
  with pytest.raises(ValueError, match="--seed_methods: a_tune not among --methods"):
    reproduce.plan_runs(["c"], seed_methods=["a_tune"])
  with pytest.raises(ValueError, match="--seeds: at least one"):
    reproduce.plan_runs(["c"], seeds=[])


def test_a_row_at_several_seeds_is_their_mean_with_the_standard_deviation():
  name = "C: Tune + StatReg (GMM)"
  seeds = [_results({"table1": {name: _table1_row(v)}, "table3": {name: {"fc7": v}}})
           for v in (0.2, 0.3, 0.4)]
  bl = _results({"table1": {"BL-Individual": _table1_row(0.1)}})
  rows = experiment_report.merge_rows(seeds + [bl], [])
  assert rows["table1"][name][("nat", "clp")] == pytest.approx(0.3)
  per_seed = experiment_report.seed_rows(seeds + [bl], [])
  assert list(per_seed["table1"]) == [name] and len(per_seed["table1"][name]) == 3
  built = tables.build_tables(rows, {"table1": 0.05, "table3": 0.05}, seed_rows=per_seed)
  table1 = built[0]
  assert table1.spread[name]["mean"] == pytest.approx(0.1) and table1.seeds == {name: 3}
  markdown = table1.to_markdown()
  assert f"| {name} (3 seeds) | " in markdown and "**30.0** ± 10.0" in markdown
  assert "| BL-Individual | 10.0 |" in markdown
  assert table1.to_dict()["spread"][name]["nat->clp"] == pytest.approx(0.1)
  comparison = experiment_report.comparison_markdown(rows, per_seed)
  assert "30.0 ± 10.0 (3 seeds)" in comparison
  ratio = experiment_report.ratios(rows, per_seed)
  assert ratio["mean_map"]["ours"] == pytest.approx(3.0)
  assert ratio["mean_map"]["per_seed"][name] == pytest.approx([0.2, 0.3, 0.4])
  assert "30.0 ± 10.0 over 3 seeds" in experiment_report.ratios_markdown(ratio)
  renamed = experiment_report.renamed(bl, "BL-Individual, other")
  assert list(renamed["rows"]["table1"]) == ["BL-Individual, other"]


def test_results_from_different_datasets_are_refused():
  with pytest.raises(ValueError, match="different datasets"):
    experiment_report.check_same_data([_results({}, fingerprint="a"), _results({}, fingerprint="b")])


def test_the_progress_line_names_the_run_and_estimates_what_is_left(tmp_path):
  assert reproduce.training_line("c", 1, 4, 4, []) == "== training c (run 1 of 4)"
  line = reproduce.training_line("c_seed1", 3, 4, 2, [600.0, 1200.0])
  assert line == ("== training c_seed1 (run 3 of 4; about 30 min of training left at this "
                  "invocation's mean per run)")
  done = tmp_path / "runs" / "a"
  done.mkdir(parents=True)
  (done / "run.json").write_text(json.dumps({"status": "complete"}))
  for name in ("spec.json", "final.weights.h5"):
    (done / name).write_text("")
  assert reproduce.runs_left(str(tmp_path), ["a", "b"]) == 1


def test_the_page_shows_the_merged_rows_with_their_seed_spread(tmp_path):
  from cmp_tf.experiments import page
  pairs = rows_lib.RETRIEVAL_PAIRS
  base = {p: 0.10 for p in pairs}
  seeds_c = [{p: v for p in pairs} for v in (0.2, 0.3, 0.4)]
  rows = {"table1": {"BL-Individual": base, "C: Tune + StatReg (GMM)": {p: 0.3 for p in pairs}},
          "table3": {"BL-Individual": {"pool5": 0.02, "fc6": 0.05, "fc7": 0.10}},
          "table4_conventional": {"A: Tune": {"clp": 0.5, "dsc": 0.3}},
          "table4": {"A: Tune": {"clp": 0.1, "dsc": 0.0}}}
  seeds = {"table1": {"C: Tune + StatReg (GMM)": seeds_c}}
  means = page.mean_and_spread(rows, seeds, "table1", pairs)
  assert means["BL-Individual"] == (pytest.approx(10.0), None)
  assert means["C: Tune + StatReg (GMM)"] == (pytest.approx(30.0), pytest.approx(10.0))
  path = page.write_reproduction_page(str(tmp_path), rows, seeds, {"table1": 0.05}, entries=[])
  text = open(path).read()
  assert 'id="main-figure"' in text and "Table 4: zero-shot, both protocols" in text
  for png in ("report_table1.png", "report_table3.png", "report_matrices.png",
              "report_matrices_difference.png", "report_table4.png"):
    assert f'src="{png}"' in text and (tmp_path / png).stat().st_size > 0


# === Slow: two tiny methods trained, evaluated, then resumed ===


@pytest.mark.slow
def test_reproduce_trains_evaluates_and_resumes(tiny_data_dir, tmp_path):
  flagfile = tmp_path / "tiny.flags"
  flagfile.write_text("\n".join([
      f"--cache_dir={tmp_path / 'cache'}", "--image_variant=alexnet_tiny",
      "--max_stage_steps=4", "--dev_every=2",
      "--frozen_steps=2", "--source_steps=2", "--batch_size=2", "--source_batch_size=4",
      "--checkpoint_every=2", "--nojit_compile", "--strategy=default"]) + "\n")
  out = tmp_path / "out"
  kwargs = dict(methods=["bl_individual", "a_tune"], zero_shot=False, data_dir=tiny_data_dir,
                train_flagfiles=[str(flagfile)], seeds=[0, 1], seed_methods=["a_tune"],
                records_dir=tmp_path / "records", progress=False)
  first = reproduce.reproduce(out, **kwargs)
  assert first["complete"] and [e["train"] for e in first["runs"]][:4] == ["trained"] * 4
  assert set(first["rows"]["table1"]) == {
      "BL-Individual", "Subsp. Align. + PlacesNet", "Subsp. Align. + PlacesNet Finetune",
      "A: Tune", reproduce.DSC_SOURCE_ROW}
  configs = {name: json.loads((out / "runs" / name / "run.json").read_text())["config"]
             for name in ("bl_individual", "bl_individual_dsc_source", "a_tune_seed1")}
  assert configs["bl_individual"]["dsc_upper_init"] == "scratch"  # configs/base.flags
  assert configs["bl_individual_dsc_source"]["dsc_upper_init"] == "source"
  assert configs["a_tune_seed1"]["seed"] == 1 and configs["a_tune_seed1"]["source_seed"] == 0
  assert len(first["source_dirs"]) == 1  # one source network for every seed
  assert all(t["seeds"] == {"A: Tune": 2} for t in first["tables"].values())
  assert "table4" not in first["rows"]
  markdown = (out / "report.md").read_text()
  for number in (1, 2, 3):
    assert f"**Table {number}:" in markdown
  assert markdown.count("Chance level:") == 3
  assert "| BL-Individual | " in markdown and "| 6.1 |" in markdown  # the paper beside ours
  assert "Wall time of every row" in markdown
  assert "Training under the protocol, drift beside Table 1" in markdown
  protocol_rows = [line for line in markdown.splitlines()
                   if line.startswith("| BL-Individual (+ Subsp. Align. + PlacesNet Finetune) | "
                                      "normal | lr ")]
  assert protocol_rows and " | - | " not in protocol_rows[0]  # its Table 1 mean is found
  assert " | 4 (" in protocol_rows[0]  # its steps
  training = {e["run"]: e["training"] for e in first["runs"] if "training" in e}
  assert training["a_tune"][0]["steps"] == 4 and training["a_tune"][0]["best_step"] in (2, 4)
  assert training["a_tune"][0]["drift"]["from_source"]["fc7"] == 0.0  # A's upper is frozen
  assert training["bl_individual"][0]["drift"]["from_source"]["fc7"] > 0
  assert "Alignment diagnostic (fc7 mAP, percent)" in markdown
  assert "The stop step over seeds" in markdown and "| A: Tune | 0 (tune) | 2 | " in markdown
  assert {(r["run"], r["stage"]) for r in first["stops"]} >= {("a_tune", 0), ("a_tune_seed1", 0)}
  assert "DSC: queries / within" in markdown
  assert {d["row"] for d in first["alignment_diagnostic"]} == {
      "BL-Individual", reproduce.DSC_SOURCE_ROW, "A: Tune (seed 0)", "A: Tune (seed 1)"}
  assert "| A: Tune (2 seeds) | " in markdown
  own = {e["run"]: e["table1_mean"] for e in first["runs"] if e.get("table1_mean")}
  merged = experiment_report.run_table1_mean(first, "A: Tune")
  assert own["a_tune"] != own["a_tune_seed1"]  # each seed's line shows its own mean
  assert abs((own["a_tune"] + own["a_tune_seed1"]) / 2 - merged) < 1e-9
  page_html = (out / "report.html").read_text()
  for png in ("report_table1.png", "report_table3.png", "report_figure5_bl_individual.png"):
    assert f'src="{png}"' in page_html and (out / png).stat().st_size > 0
  assert 'id="main-figure"' in page_html
  assert (out / "runs" / "a_tune" / "eval" / "index.html").is_file()  # each run's own page

  weights = out / "runs" / "a_tune" / "final.weights.h5"
  trained_at = os.stat(weights).st_mtime_ns
  bl_results = out / "runs" / "bl_individual" / "eval" / "results.json"
  evaluated_at = os.stat(bl_results).st_mtime_ns
  os.remove(out / "runs" / "a_tune" / "eval" / "results.json")  # as if interrupted there
  second = reproduce.reproduce(out, **kwargs)
  statuses = {e["run"]: (e["train"], e["evaluate"]) for e in second["runs"]}
  assert statuses == {"bl_individual": ("kept", "kept"), "a_tune": ("kept", "evaluated"),
                      "bl_individual_dsc_source": ("kept", "kept"),
                      "a_tune_seed1": ("kept", "kept"),
                      "source": ("source network (trained)", "kept")}
  assert os.stat(weights).st_mtime_ns == trained_at
  assert os.stat(bl_results).st_mtime_ns == evaluated_at
  assert second["rows"] == first["rows"]
  assert json.loads((out / "results.json").read_text())["rows"] == second["rows"]

  # Another machine: no run directories, no source network; only the committed records.
  shutil.rmtree(out / "runs")
  shutil.rmtree(tmp_path / "cache" / "source")
  third = reproduce.reproduce(tmp_path / "elsewhere", **kwargs)
  statuses = {e["run"]: (e["train"], e["evaluate"]) for e in third["runs"]}
  trained_on = statuses["a_tune"][0]
  assert trained_on.startswith("record, trained on ")
  assert statuses == {name: (trained_on, "record") for name in (
      "bl_individual", "a_tune", "bl_individual_dsc_source", "a_tune_seed1")} | {
      "source": ("source network (trained)", "record")}
  assert third["rows"] == first["rows"]
  assert third["alignment_diagnostic"] == second["alignment_diagnostic"]
  assert not (tmp_path / "elsewhere" / "runs").exists()  # nothing was trained


def test_a_record_is_taken_only_for_the_configuration_it_was_trained_with(tmp_path):
  from cmp_tf.experiments import records
  args = reproduce.train_command("c", False, str(tmp_path / "runs" / "c"), seed=1)[3:]
  config = records.planned_config(args)
  assert config["method"] == "c" and config["seed"] == 1 and "run_dir" not in config
  state = {"status": "complete", "config": {**config, "run_dir": "/elsewhere/runs/c",
                                            "cache_dir": "/elsewhere/.cache"},
           "runtime": {"cpu": "Some CPU"}}
  records.write_run_record(tmp_path / "records", "c", state, results={"rows": {}})
  found = records.find_run_record(tmp_path / "records", "c", args)
  assert found["run_json"] == state and records.trained_on(found) == (
      "record, trained on Some CPU")
  assert records.find_run_record(tmp_path / "records", "c", [*args, "--seed=2"]) is None
  assert records.find_run_record(tmp_path / "records", "a_tune", [*args, "--seed=2"]) is None
  # A setting added since the record matches at its default, not at another value.
  older = {k: v for k, v in config.items() if k != "plateau_z"}
  assert records.same_config(older, config)
  assert not records.same_config(older, {**config, "plateau_z": 2.0})
  assert not records.same_config({**config, "removed_setting": 1}, config)
  # The same configuration under another name (a sweep's run at the rate a method uses).
  assert records.find_run_record(tmp_path / "records", "c_lr0.001", args)["run"] == "c"
  assert records.find_run_record(None, "c", args) is None


def _history(means):
  return [{"step": 100 * (i + 1), "mean": m} for i, m in enumerate(means)]


def test_the_earlier_rule_is_replayed_on_a_recorded_dev_curve():
  from cmp_tf.experiments import stops
  # Best 0.50 at step 200; 0.503 is within 0.005 of it; four evaluations without a gain.
  curve = _history([0.40, 0.50, 0.503, 0.49, 0.50, 0.502, 0.60])
  assert stops.earlier_rule_stop(curve, 2500) == (600, 200, 0.50)
  assert stops.earlier_rule_stop(curve[:5], 2500) is None  # the history ends first
  assert stops.earlier_rule_stop(_history([0.1, 0.2, 0.3]), 300) == (300, 300, 0.3)  # cap
  state = {"stages": [
      {"name": "frozen", "steps": 700, "best_step": 700, "stop_reason": "cap",
       "max_steps": 700, "dev_history": curve},
      {"name": "gmm", "steps": 300, "best_step": 300, "stop_reason": "cap", "max_steps": 300,
       "dev_history": _history([0.6, 0.61, 0.62])}]}
  rows = stops.stage_rows("c", "C", 0, state)
  assert [(r["steps"], r["earlier_steps"], r["earlier_best_step"]) for r in rows] == [
      (700, 600, 200), (300, 300, 300)]
  assert rows[0]["earlier_exact"] and not rows[1]["earlier_exact"]  # other weights carried
  assert rows[0]["dev_mean"] == 0.60
  seed1 = stops.stage_rows("c_seed1", "C", 1, {"stages": [dict(state["stages"][0],
                                                              steps=500, best_step=500)]})
  markdown = stops.stops_markdown(rows + seed1)
  assert "| C | 0 (frozen) | 2 | 600 ± 141 (500-700) | 600 ± 0 (600-600) |" in markdown
  assert "| c | 1 (gmm) | 300 (cap) | 300 | 62.0 | 300 ≈ | 300 ≈ | 62.0 ≈ |" in markdown


# === The learning-rate sweep ===


def test_sweep_gives_each_method_its_best_dev_rate_and_skips_scratch_recipes():
  from cmp_tf.experiments import lr_sweep
  assert "bl_shared_upper_scratch" not in lr_sweep.swept_methods(recipes.METHOD_NAMES)
  assert "c" in lr_sweep.swept_methods(recipes.METHOD_NAMES)
  chosen = lr_sweep.choose({"a": {0.001: 0.5, 0.01: 0.6}, "b": {0.001: 0.7, 0.01: 0.7},
                            "c": {0.001: None, 0.01: 0.2}, "d": {0.001: None},
                            "e": {0.001: 0.55, 0.003: 0.60, 0.01: 0.61}})
  # e: 1e-2 wins by less than the dev split's noise over 3e-3, which is taken.
  assert chosen == {"a": 0.01, "b": 0.001, "c": 0.01, "d": None, "e": 0.003}
  assert lr_sweep.choose({"e": {0.003: 0.60, 0.01: 0.61}}, tie_within=0.0) == {"e": 0.01}


@pytest.mark.slow
def test_sweep_trains_every_rate_and_writes_its_report(tiny_data_dir, tmp_path):
  from cmp_tf.experiments import lr_sweep
  flagfile = tmp_path / "tiny.flags"
  flagfile.write_text("\n".join([
      f"--cache_dir={tmp_path / 'cache'}", "--image_variant=alexnet_tiny",
      "--max_stage_steps=4", "--dev_every=2", "--source_steps=2", "--batch_size=2",
      "--source_batch_size=4", "--strategy=default"]) + "\n")
  result = lr_sweep.sweep(tmp_path / "sweep", methods=["a_tune"], rates=[0.01, 0.001],
                          data_dir=tiny_data_dir, train_flagfiles=[str(flagfile)],
                          records_dir=tmp_path / "records", progress=False)
  scores = result["scores"]["a_tune"]
  assert set(scores) == {"0.01", "0.001"} and all(0 <= s <= 1 for s in scores.values())
  assert result["chosen"]["a_tune"] in (0.01, 0.001)
  lines = (tmp_path / "sweep" / "runs" / "a_tune_lr0.001" / "flags.txt").read_text().split()
  assert "--learning_rate=0.001" in lines
  assert "| A: Tune |" in (tmp_path / "sweep" / "sweep.md").read_text()
  again = lr_sweep.sweep(tmp_path / "sweep", methods=["a_tune"], rates=[0.01, 0.001],
                         data_dir=tiny_data_dir, train_flagfiles=[str(flagfile)],
                         progress=False)
  assert [r["status"] for r in again["runs"]] == ["kept", "kept"]
  shutil.rmtree(tmp_path / "sweep")  # another machine, with the records only
  elsewhere = lr_sweep.sweep(tmp_path / "elsewhere", methods=["a_tune"], rates=[0.01, 0.001],
                             data_dir=tiny_data_dir, train_flagfiles=[str(flagfile)],
                             records_dir=tmp_path / "records", progress=False)
  assert [r["status"].split(",")[0] for r in elsewhere["runs"]] == ["record", "record"]
  assert elsewhere["scores"] == result["scores"]


def test_a_sweep_s_report_keeps_the_methods_an_earlier_invocation_swept(tmp_path):
  from cmp_tf.experiments import lr_sweep
  path = tmp_path / lr_sweep.SWEEP_JSON
  run = {"method": "a_tune", "rate": 0.003, "status": "kept", "training": None}
  path.write_text(json.dumps({
      "methods": ["a_tune", "gone"], "scores": {"a_tune": {"0.003": 0.6}, "gone": {}},
      "runs": [run, {**run, "method": "gone"}]}))
  assert lr_sweep.earlier_results(path, ["c"], recipes.METHODS) == (
      {"a_tune": {0.003: 0.6}}, [run])  # a method no longer known is dropped
  assert lr_sweep.earlier_results(path, ["a_tune"], recipes.METHODS) == ({}, [])
  assert lr_sweep.earlier_results(tmp_path / "none.json", ["c"], recipes.METHODS) == ({}, [])


def test_a_diverged_sweep_run_is_kept_and_shown_as_such(tmp_path):
  from cmp_tf.experiments import lr_sweep
  run_dir = tmp_path / "runs" / "a_tune_lr0.01"
  run_dir.mkdir(parents=True)
  (run_dir / "run.json").write_text(json.dumps({
      "status": "diverged", "error": "NonFiniteLossError: stage 0 (tune): non-finite loss "
      "inf or gradient at step 23 of 2500"}))
  assert lr_sweep._failure(str(run_dir)).startswith("diverged: NonFiniteLossError")
  result = {"rates": [0.001, 0.01], "methods": ["a_tune"],
            "scores": {"a_tune": {"0.001": 0.6, "0.01": None}}, "chosen": {"a_tune": 0.001},
            "runs": [{"method": "a_tune", "rate": 0.01, "status": lr_sweep._failure(
                str(run_dir)), "training": None}]}
  assert "| A: Tune | 60.0 | diverged (step 23) | 0.001 |" in lr_sweep.sweep_markdown(result)


# === The hyperparameter grid ===


def test_the_grid_moves_each_method_s_hyperparameter_a_factor_of_ten_around_its_reference():
  from cmp_tf.experiments import hparam_grid
  assert hparam_grid.grid_values("c") == (1e-4, [1e-5, 1e-4, 1e-3])
  assert hparam_grid.grid_values("supcon") == (0.1, [0.01, 0.1, 1.0])
  assert hparam_grid.grid_values("dann") == (1.0, [0.1, 1.0, 10.0])  # whatever dann.flags says
  assert hparam_grid.value_flags("b_gmm", 1e-5) == [
      "--lambda_pool5=1e-05", "--lambda_fc6=1e-05", "--lambda_fc7=1e-05"]
  assert hparam_grid.gridded_methods(recipes.METHOD_NAMES) == [
      "b_gaussian", "b_gmm", "c", *recipes.ALIGNMENT_METHODS]


def test_every_flagfile_trains_with_the_value_its_committed_grid_chose():
  from cmp_tf.experiments import hparam_grid
  committed = json.loads((paths.REPO_ROOT / "docs" / "reproduction" / "grid.json").read_text())
  assert set(committed["methods"]) == set(hparam_grid.HYPERPARAMETERS)
  for method in hparam_grid.HYPERPARAMETERS:
    assert committed["defaults"][method] == hparam_grid.grid_values(method)[0], method
    assert hparam_grid.flagfile_value(method) == committed["chosen"][method], method


def test_the_grid_keeps_the_reference_value_unless_another_wins_by_more_than_the_noise():
  from cmp_tf.experiments import hparam_grid
  defaults = {"c": 1e-4, "mmd": 1.0, "dann": 1.0, "cdann": 1.0, "coral": 1.0}
  chosen = hparam_grid.choose({
      "c": {1e-5: 0.2, 1e-4: 0.3, 1e-3: 0.3},         # exact tie with the flagfile's
      "mmd": {0.1: None, 1.0: None},                  # nothing scored
      "dann": {0.1: 0.405, 1.0: 0.40, 10.0: 0.39},    # within the tie margin (0.01)
      "cdann": {0.1: 0.42, 1.0: 0.40, 10.0: 0.425},   # beaten by more: the best
      "coral": {0.1: 0.42, 1.0: None, 10.0: 0.42}},   # the flagfile's failed: the best, the smaller
      defaults)
  assert hparam_grid.TIE_WITHIN == 0.01
  assert chosen == {"c": 1e-4, "mmd": None, "dann": 1.0, "cdann": 10.0, "coral": 0.1}


@pytest.mark.slow
def test_the_grid_scores_every_value_on_the_dev_split_and_continues_from_records(
    tiny_data_dir, tmp_path, monkeypatch):
  from cmp_tf.experiments import hparam_grid
  # Two of the three values (the third trains the same way; grid_values has its own test).
  monkeypatch.setattr(hparam_grid, "grid_values", lambda method: (1.0, [1.0, 10.0]))
  flagfile = tmp_path / "tiny.flags"
  flagfile.write_text("\n".join([
      f"--cache_dir={tmp_path / 'cache'}", "--image_variant=alexnet_tiny",
      "--max_stage_steps=2", "--dev_every=2", "--source_steps=2", "--batch_size=2",
      "--source_batch_size=4", "--strategy=default"]) + "\n")
  kwargs = dict(methods=["coral"], data_dir=tiny_data_dir, train_flagfiles=[str(flagfile)],
                records_dir=tmp_path / "records", progress=False)
  result = hparam_grid.grid(tmp_path / "grid", **kwargs)
  scores = result["scores"]["coral"]
  assert set(scores) == {"1", "10"} and all(0 < s <= 1 for s in scores.values())
  assert result["chosen"]["coral"] in (1.0, 10.0)
  flags_txt = (tmp_path / "grid" / "runs" / "coral_lambda10" / "flags.txt").read_text()
  assert "--lambda_coral=10.0" in flags_txt.split()
  assert "| Tune + CORAL | lambda (--lambda_coral = 1) | 1: " in (
      tmp_path / "grid" / "grid.md").read_text()
  again = hparam_grid.grid(tmp_path / "elsewhere", **kwargs)  # another machine: records only
  assert [r["status"].split(",")[0] for r in again["runs"]] == ["record"] * 2
  assert again["scores"] == result["scores"]
  # A later invocation for another method keeps this one's scores; for it, its own.
  from cmp_tf.experiments import lr_sweep
  grid_json = tmp_path / "grid" / hparam_grid.GRID_JSON
  earlier = lambda methods: lr_sweep.earlier_results(  # noqa: E731
      grid_json, methods, hparam_grid.HYPERPARAMETERS)
  earlier_scores, earlier_runs = earlier(["mmd"])
  assert earlier_scores == {"coral": {1.0: scores["1"], 10.0: scores["10"]}}
  assert [r["value"] for r in earlier_runs] == [1.0, 10.0]
  assert earlier(["coral"]) == ({}, [])
  # Per-query scores average to the score (every tiny dev modality has as many examples).
  queries = hparam_grid.dev_query_scores(tmp_path / "grid" / "runs" / "coral_lambda10")
  np.testing.assert_allclose(np.mean(queries), scores["10"], atol=2e-6)


def test_the_grid_s_noise_is_the_standard_error_over_queries_and_of_paired_differences():
  from cmp_tf.experiments import hparam_grid
  a, b = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.1, 0.4, 0.4, 0.9])
  noise = hparam_grid.score_noise({"a": a, "b": b})
  assert noise["runs"]["a"]["score"] == pytest.approx(0.5)
  assert noise["runs"]["a"]["se"] == pytest.approx(np.sqrt(((a - 0.5) ** 2).sum() / 3) / 2)
  (pair,) = noise["differences"]
  d = a - b  # 0.1, 0, 0.2, -0.1: mean 0.05
  assert pair["runs"] == ["a", "b"] and pair["difference"] == pytest.approx(0.05)
  assert pair["paired_se"] == pytest.approx(np.sqrt(((d - 0.05) ** 2).sum() / 3) / 2)


def test_a_modality_whose_features_retrieve_at_chance_is_reported_as_a_dead_branch():
  def modality(within, chance=0.0473):
    return {"within": within, "within_chance": chance, "as_query": 0.3, "as_target": 0.3,
            "premise": 1.0, "premise_above_chance": 1.0}
  rows = [experiment_report.diagnostic_row("BL-Individual (seed 2)", {
              "nat": modality(0.66), "spt": modality(0.017), "ldr": modality(0.09)}),
          experiment_report.diagnostic_row("C: Tune + StatReg (GMM)", {
              "nat": modality(0.65), "spt": modality(0.1), "dsc": modality(None)})]
  assert experiment_report.dead_branches(rows) == [
      ("BL-Individual (seed 2)", "spt", 0.017, 0.0473),
      ("BL-Individual (seed 2)", "ldr", 0.09, 0.0473)]  # under 2x chance is dead; above it is not
  markdown = experiment_report.diagnostic_markdown(rows)
  assert ("**Dead branches** (within-modality mAP at most 2x its chance" in markdown
          and "BL-Individual (seed 2), SPT (within 1.7, chance 4.73)" in markdown)
  assert "Dead branches" not in experiment_report.diagnostic_markdown(rows[1:])
