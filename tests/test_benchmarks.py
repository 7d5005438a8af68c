"""Smoke tests of benchmarks/: every script runs at its smallest setting and reports sane figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cmp_tf import paths

if str(paths.REPO_ROOT) not in sys.path:  # benchmarks/ is a top-level folder of the checkout
  sys.path.insert(0, str(paths.REPO_ROOT))

from benchmarks import common, end_to_end, harness, input_pipeline, priors, retrieval  # noqa: E402

_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(paths.REPO_ROOT)}


def _run(args, timeout=600):
  result = subprocess.run(args, cwd=paths.REPO_ROOT, env=_ENV, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def test_layer_widths_match_the_models():
  from cmp_tf.models.spec import CrossModalSpec
  for variant, widths in retrieval.LAYER_WIDTHS.items():
    spec = CrossModalSpec(modalities=("nat",), num_classes=3, image_variant=variant)
    assert widths == tuple(spec.layer_dim(layer) for layer in retrieval.LAYERS), variant


def test_interleaved_timing_and_results_file(tmp_path):
  calls = []
  timings = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               rounds=3, per={"a": 2, "b": 1})
  assert calls == ["a", "b"] * 3
  assert timings["a"].summary()["rounds"] == 3
  path = common.write_results(str(tmp_path / "x.json"), "x", {"n": np.int64(3), "t": (1, 2)},
                              ["prog"])
  payload = json.loads(open(path).read())
  assert payload["results"] == {"n": 3, "t": [1, 2]}
  assert len(payload["machine"]["load_average"]) == 3


def test_retrieval_benchmark_agrees_with_sklearn():
  results = retrieval.run_benchmark(variants=["alexnet_tiny"], items=60, classes=6, rounds=1,
                                    sklearn_queries=12, blas_threads=1, seed=0,
                                    log=lambda *a, **k: None)
  (r,) = results["variants"]
  assert r["queries"] == 20 * 60 * 3
  assert r["sklearn"]["queries_timed"] == 36
  assert r["sklearn"]["max_ap_difference_to_cmp_tf"] < 1e-6
  assert r["speedup_vs_sklearn"] > 1
  assert "target >= 50x" in retrieval.format_variant(r)
  with pytest.raises(ValueError, match="--variants: unknown variant 'vgg'"):
    retrieval.run_benchmark(variants=["vgg"], items=60, classes=6, rounds=1,
                            sklearn_queries=1, blas_threads=1, seed=0)


def test_end_to_end_measures_memory_time_and_milestones(tmp_path):
  # A stand-in command: allocates ~200 MB, prints a milestone line of cmp_tf.train.
  command = [sys.executable, "-c", "import time; x = bytearray(200 * 2**20); "
             "time.sleep(1.5); print('run finished: here', flush=True)"]
  r = end_to_end.run_command(command, str(tmp_path / "log.txt"), sample_every_s=0.2,
                             echo=False)
  assert r["returncode"] == 0
  assert r["peak_rss_largest_process_bytes"] > 200 * 2**20
  assert r["peak_rss_process_tree_bytes"] > 200 * 2**20
  assert r["wall_s"] >= 1.5  # it slept that long
  assert [m["line"] for m in r["milestones"]] == ["run finished: here"]
  assert "peak memory" in end_to_end.format_results(r)


def test_priors_benchmark_rejects_a_stage_without_priors():
  with pytest.raises(ValueError, match="a_tune/tune' is not a stage with priors"):
    priors.run_benchmark(size=harness.get_size("tiny"), stage_names=["a_tune/tune"], steps=1,
                         rounds=1)


@pytest.mark.slow
def test_priors_benchmark_tiny():
  results = priors.run_benchmark(size=harness.get_size("tiny"),
                                 stage_names=["c/free_statreg"], steps=1,
                                 rounds=1, log=lambda *a, **k: None)
  stage = results["stages"]["c/free_statreg"]
  assert {p["layer"] for p in stage["priors"]} == {"pool5", "fc6", "fc7"}
  assert stage["ratio_best"] > 0 and stage["ms_without"]["best"] > 0
  assert stage["old_ratio_best"] > 0  # the earlier mixture path, timed beside it
  assert "target <= 1.05x" in priors.format_results(results)


@pytest.mark.slow
def test_input_pipeline_benchmark_tiny(tiny_data_dir):
  results = input_pipeline.run_benchmark(
      data_dir=tiny_data_dir, modalities=["nat", "clp", "spt", "ldr", "dsc"], batch_size=4,
      variant="alexnet_tiny", steps=1, rounds=1, stages=("tune",), log=lambda *a, **k: None)
  assert results["examples_per_batch"] == 20
  assert set(results["examples_per_s"]) == {
      "stream", "decode_stream", "train tune (real input)", "train tune (fixed batch)"}
  assert results["stream_over_training"] > 0
  assert "stream / training" in input_pipeline.format_results(results)


@pytest.mark.slow
def test_gpu_script_runs_every_method_on_cpu_at_tiny_size(tmp_path):
  out = tmp_path / "gpu.json"
  # No time budget here: a loaded test machine must not skip stages.
  stdout = _run(["bash", "benchmarks/gpu.sh", "--size=tiny", "--steps=1", "--rounds=1",
                 "--time_budget_s=0", "--profile", f"--profile_dir={tmp_path / 'trace'}",
                 f"--out={out}"])
  results = json.loads(out.read_text())["results"]
  assert set(results["methods"]) == {
      "source", "bl_individual", "bl_shared_upper", "bl_shared_upper_scratch", "a_tune",
      "a_tune_free", "b_gaussian", "b_gmm", "c"}
  assert not results["skipped"]
  assert results["matmul"]["flops_per_s"] > 0
  for method in results["methods"].values():
    assert method["examples_per_s"] > 0 and 0 < method["utilisation"]
  assert any("Conv2D" in op["op"] for op in results["profile"]["ops"])
  assert "c" in stdout and "util" in stdout
  # The target verdict is printed for the default model only, not at --size=tiny.
  assert "C (the default method): utilisation" not in stdout


@pytest.mark.slow
def test_scale_script_tiny(tmp_path):
  out = tmp_path / "scale.json"
  stdout = _run([sys.executable, "-m", "benchmarks.scale", "--size=tiny", "--methods=source",
                 "--batch_size=2", "--steps=1", "--rounds=1", f"--out={out}"])
  results = json.loads(out.read_text())["results"]
  assert results["per_example"]["source/source"]["ms_per_example"] > 0
  assert "ms per example" in stdout


@pytest.mark.slow
def test_end_to_end_script_on_a_tiny_run(tiny_data_dir, tmp_path):
  out = tmp_path / "e2e.json"
  stdout = _run([sys.executable, "-m", "benchmarks.end_to_end",
                 f"--train_flagfile={paths.CONFIGS_DIR / 'quick.flags'}",
                 f"--workdir={tmp_path / 'work'}", f"--out={out}",
                 f"--extra_flags=--data_dir={tiny_data_dir},--source_steps=2,--frozen_steps=2,"
                 "--steps=2,--stop_rule=fixed,--noevaluate,--noexport"])
  results = json.loads(out.read_text())["results"]
  assert results["returncode"] == 0
  assert any("stage 1" in m["line"] for m in results["milestones"])
  assert results["peak_rss_largest_process_bytes"] > 100 * 2**20
  assert "load average during the run" in stdout


def test_data_build_benchmark_tiny(tmp_path):
  from benchmarks import data_build
  results = data_build.run_benchmark(workers=["1"], synthcmp=["tiny"], images=10,
                                     image_size=16, run_dir="", workdir=str(tmp_path),
                                     log=lambda *a, **k: None)
  (built,) = results["synthcmp"]
  assert built["examples"] > 0 and built["wall_s"] > 0
  (ingest,) = results["cmplaces"]
  assert ingest["images"] == 15 and ingest["seconds_per_10000"] > 0

