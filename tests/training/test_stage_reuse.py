"""Stages taken from a run that trained them exactly as a new run would: which runs qualify
(settings, dataset, kernels, finished stages). That such a run ends with the weights of a run
trained whole is tested beside the resume tests (tests/training/test_training_loop.py)."""

import json

import pytest

from cmp_tf import finished_run
from cmp_tf.training import config as config_lib
from cmp_tf.training import stage_reuse

RUNTIME = {"cpu": "AMD EPYC", "cpu_flags": "avx2", "onednn": True, "intra_op_threads": 2,
           "inter_op_threads": 2, "allocator": "x", "tensorflow": "2.21.0"}


def _finished(method, **settings):
  """run.json of a finished run of `method` as runner.open_run writes it."""
  config = config_lib.TrainConfig(method=method, stop_rule="plateau", **settings)
  recipe = config.recipe()
  return {"config": config.to_dict(), "recipe": recipe.to_dict(), "runtime": dict(RUNTIME),
          "manifest_fingerprint": "f1", "status": "complete",
          "stages": [{"name": s.name, "status": "complete", "wall_time_s": 10.0}
                     for s in recipe.stages]}


def _shared(donor, method, runtime=RUNTIME, fingerprint="f1", **settings):
  config = config_lib.TrainConfig(method=method, stop_rule="plateau", **settings)
  return stage_reuse.shared_stages(donor, config=config, recipe=config.recipe(),
                                   fingerprint=fingerprint, runtime=runtime,
                                   ignored=("run_dir", "stage_donors"))


def test_the_frozen_stage_is_shared_by_every_method_built_on_it():
  a_tune = _finished("a_tune")
  for method in ("a_tune", "a_tune_free", "c", "coral", "dann", "supcon", "c_proxy"):
    assert _shared(a_tune, method) == 1, method
  c = _finished("c")
  assert _shared(c, "c") == 2
  assert _shared(c, "c", lambda_fc7=1e-3) == 1  # the prior's weight reaches stage 1 only
  assert _shared(c, "coral") == 1 and _shared(c, "a_tune_free") == 1
  assert _shared(c, "bl_individual") == 0 and _shared(_finished("bl_individual"), "c") == 0


@pytest.mark.parametrize("change", [
    {"seed": 1}, {"learning_rate": 3e-3}, {"zero_shot": True}, {"batch_size": 16},
    {"plateau_patience": 5}, {"source_seed": 2}, {"dsc_upper_init": "scratch"}])
def test_a_setting_that_reaches_the_first_stage_shares_nothing(change):
  assert _shared(_finished("a_tune"), "c", **change) == 0


def test_other_data_kernels_or_unfinished_stages_share_nothing():
  donor = _finished("c")
  assert _shared(donor, "c", fingerprint="f2") == 0
  assert _shared(donor, "c", runtime={**RUNTIME, "cpu_flags": "avx512f"}) == 0
  assert _shared(donor, "c", runtime={**RUNTIME, "allocator": "y"}) == 2  # speed only
  resumed = {**donor, "resumed_with_other_runtime": [RUNTIME]}
  assert _shared(resumed, "c") == 0
  half = {**donor, "stages": donor["stages"][:1] + [{"status": "running"}]}
  assert _shared(half, "c") == 1
  assert _shared({**donor, "runtime": None}, "c") == 0


def test_the_donor_sharing_most_stages_with_its_weights_there_is_taken(tmp_path):
  for name, method, weights in (("a", "a_tune", 1), ("c", "c", 2), ("c_nofiles", "c", 0)):
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(_finished(method)))
    for i in range(weights):
      (run / stage_reuse.stage_weights_name(i)).write_bytes(b"w")
  config = config_lib.TrainConfig(method="c", stop_rule="plateau")
  find = lambda donors, run_dir: stage_reuse.find_donor(  # noqa: E731
      donors, run_dir, config=config, recipe=config.recipe(), fingerprint="f1",
      runtime=RUNTIME, ignored=("run_dir",))
  assert find([str(tmp_path / "runs")], tmp_path / "new") == (str(tmp_path / "runs" / "c"), 2)
  assert find([str(tmp_path / "runs")], tmp_path / "runs" / "c") == (
      str(tmp_path / "runs" / "a"), 1)  # never itself
  assert find([str(tmp_path / "runs" / "c_nofiles")], tmp_path / "new") == (None, 0)
  assert find([str(tmp_path / "nowhere")], tmp_path / "new") == (None, 0)


def test_a_row_counts_the_time_of_the_stages_it_took():
  state = {"train_wall_time_s": 50.0, "stages": [
      {"wall_time_s": 300.0, finished_run.REUSED_FROM: "/r/a_tune"}, {"wall_time_s": 48.0}]}
  assert finished_run.train_seconds(state) == (350.0, 300.0)
  assert finished_run.train_seconds({"train_wall_time_s": 9.0, "stages": [{}]}) == (9.0, 0)
