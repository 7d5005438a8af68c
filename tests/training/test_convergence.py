"""The protocol's pieces: the dev split, the plateau rule, best-weights restore, drift."""

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf import modalities as mod_lib
from cmp_tf.data import input_pipeline, plan
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.training import drift, plateau, stages, trainer
from tests.training.test_training_loop import _job, _tiny_model


def _ids(data_dir, modality, split):
  ds = input_pipeline.modality_dataset(data_dir, modality, split, batch_size=64,
                                       training=False, with_meta=True)
  return [i.decode() for _, _, meta in ds for i in meta["example_id"].numpy()]


def test_dev_split_is_disjoint_from_train_and_val_for_every_modality(tiny_data_dir):
  manifest = manifest_lib.read_manifest(tiny_data_dir)
  per_category = manifest["dev_split"]["per_category"]
  assert per_category == 2
  for m in mod_lib.ALL_MODALITIES:
    dev = _ids(tiny_data_dir, m, "dev")
    assert dev == manifest["modalities"][m]["dev"]["example_ids"]
    assert manifest["modalities"][m]["dev"]["label_counts"] == [per_category] * 6
    train, val = set(_ids(tiny_data_dir, m, "train")), set(_ids(tiny_data_dir, m, "val"))
    assert not set(dev) & train and not set(dev) & val
    assert all("/train/" in i for i in dev), "dev examples are carved out of train"


def test_dev_carve_is_a_function_of_the_seed():
  labels = [0] * 10 + [1] * 3 + [2] * 1
  first = plan.carve_dev(labels, 5, seed=7)
  assert first == plan.carve_dev(labels, 5, seed=7)
  assert first != plan.carve_dev(labels, 5, seed=8)
  chosen = np.asarray(labels)[first]
  # At most 5 per category, and every category keeps one training example.
  assert (chosen == 0).sum() == 5 and (chosen == 1).sum() == 2 and (chosen == 2).sum() == 0


def _rule(**kw):
  return plateau.PlateauRule(**{"every": 2, "patience": 2, "z": 3.0, "max_steps": 40, **kw})


def _scores(accuracy, losses):
  """DevScores with the given accuracy (its first examples right) and per-example losses."""
  losses = np.asarray(losses, np.float64)
  correct = np.arange(len(losses)) < round(accuracy * len(losses))
  return plateau.DevScores(correct, losses)


def _run_curve(state, curves, first_step=2):
  """Feeds {modality: [(accuracy, losses), ...]} to `state` until it stops; returns the
  step of the last evaluation."""
  steps = range(first_step, first_step + 2 * len(next(iter(curves.values()))), 2)
  for i, step in enumerate(steps):
    state.add(step, {m: _scores(*curve[i]) for m, curve in curves.items()})
    if state.stop_reason:
      break
  return step


def test_dev_scores_are_cross_entropy_and_accuracy():
  logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
  scores = plateau.DevScores.from_logits(logits, np.array([0, 1]))
  expected = [np.log(np.exp(2) + 2) - 2, np.log(np.exp(5) + 2)]
  np.testing.assert_allclose(scores.losses, expected)
  assert scores.accuracy == 0.5


def test_paired_gain_is_the_mean_fall_and_its_standard_error():
  gain, se = plateau.paired_gain([2.0, 3.0, 4.0], [1.0, 1.0, 4.0])
  assert gain == 1.0 and np.isclose(se, np.std([1, 2, 0], ddof=1) / np.sqrt(3))


# Losses fall by 0.5, then 0.2 (both far beyond 3 SE of a 0.01 spread), then twice by 0.001
# (within the noise): with patience 2 the rule stops after the fifth evaluation (step 10);
# the best mean accuracy is the third's (step 6).
_BASE, _NOISE = np.linspace(1.0, 3.0, 50), np.tile([0.01, -0.01], 25)
_HAND_CHECKED = [(0.1, _BASE), (0.3, _BASE - 0.5 + _NOISE), (0.4, _BASE - 0.7 - _NOISE),
                 (0.34, _BASE - 0.701 + _NOISE), (0.36, _BASE - 0.702 + _NOISE),
                 (0.9, _BASE - 2)]


def test_a_hand_checked_curve():
  state = plateau.PlateauState(_rule())
  step = _run_curve(state, {"nat": _HAND_CHECKED})
  assert step == 10 and state.stop_reason == plateau.STOPPED_PLATEAU
  assert [e["gained"] for e in state.history] == [["nat"], ["nat"], ["nat"], [], []]
  assert state.references["nat"]["step"] == 6 and state.best["step"] == 6
  assert state.history[1]["gain"]["nat"] == 0.5 and state.history[3]["se"]["nat"] > 0


def test_a_modality_still_learning_keeps_the_stage_going_while_the_mean_is_flat():
  rng = np.random.default_rng(0)
  base = rng.uniform(0.5, 4.0, 100)
  flat = [(0.5, base + rng.normal(0, 0.05, 100)) for _ in range(12)]
  slow = [(0.1 + 0.01 * i, base + 1 - 0.05 * i + rng.normal(0, 0.05, 100))
          for i in range(12)]
  # The flat modality's accuracy falls as the slow one's rises: the mean is flat.
  flat = [(0.5 - 0.01 * i, losses) for i, (_, losses) in enumerate(flat)]
  state = plateau.PlateauState(_rule(patience=3))
  assert _run_curve(state, {"nat": flat, "dsc": slow}) == 24
  assert state.stop_reason is None
  assert all("dsc" in e["gained"] for e in state.history)
  assert len({e["mean"] for e in state.history}) == 1
  alone = plateau.PlateauState(_rule(patience=3))
  assert _run_curve(alone, {"nat": flat}) <= 2 + 2 * 3  # without it: stops at once


def test_pure_noise_around_a_plateau_stops_within_the_patience():
  stopped = []
  for seed in range(50):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 4.0, 150)
    curves = {m: [(0.5 + rng.normal(0, 0.02), base + rng.normal(0, 0.2, 150))
                  for _ in range(20)] for m in ("nat", "clp", "spt", "ldr", "dsc")}
    state = plateau.PlateauState(_rule(patience=4))
    stopped.append(_run_curve(state, curves))
  # The first evaluation sets the references; then 4 without a gain. Five modalities at 3 SE
  # give a chance gain in under 1 % of evaluations: almost every run stops at once.
  assert sum(step == 2 + 2 * 4 for step in stopped) >= 48, stopped
  assert max(stopped) <= 2 + 2 * 8, stopped


def test_the_state_resumes_exactly_from_json():
  rng = np.random.default_rng(1)
  base = rng.uniform(0.5, 4.0, 30)
  curve = [(0.1 * i, base - 0.1 * i + rng.normal(0, 0.01, 30)) for i in range(8)]
  straight = plateau.PlateauState(_rule(patience=3))
  _run_curve(straight, {"nat": curve})
  first = plateau.PlateauState(_rule(patience=3))
  _run_curve(first, {"nat": curve[:3]})
  resumed = plateau.PlateauState.from_json(_rule(patience=3), first.to_json()).truncated(6)
  _run_curve(resumed, {"nat": curve[3:]}, first_step=8)
  assert resumed.history == straight.history and resumed.references == straight.references
  with pytest.raises(ValueError, match="after step 4"):
    first.truncated(4)
  with pytest.raises(ValueError, match="earlier convergence rule"):
    plateau.PlateauState.from_json(_rule(), "[]")


def test_the_rule_stops_at_the_cap():
  state = plateau.PlateauState(_rule(max_steps=5))
  assert _rule(max_steps=5).is_evaluation_step(5)
  state.add(4, {"nat": _scores(0.1, [1.0, 2.0])})
  assert state.stop_reason is None
  state.add(5, {"nat": _scores(0.2, [0.5, 1.0])})
  assert state.stop_reason == plateau.STOPPED_CAP


class _ScriptedDev:
  """A dev curve given by hand, one (accuracy, losses) per call (the rule's evaluations)."""

  def __init__(self, values):
    self.values, self.calls = list(values), 0

  def __call__(self, model):
    value = self.values[self.calls]
    self.calls += 1
    return {"nat": _scores(*value)}


@pytest.mark.slow
def test_a_plateau_stage_stops_where_the_curve_says_and_keeps_the_best_weights(
    tiny_data_dir, tmp_path):
  strategy = tf.distribute.get_strategy()
  model = _tiny_model(tiny_data_dir)
  job = _job(model, tiny_data_dir, tmp_path / "plateau", stop=_rule(), checkpoint_every=100,
             learning_rate=0.01,
             evaluate_dev=_ScriptedDev(_HAND_CHECKED))
  result = trainer.run_stage(job, strategy)
  assert (result["steps"], result["best_step"], result["stop_reason"]) == (10, 6, "plateau")
  assert [e["step"] for e in result["dev_history"]] == [2, 4, 6, 8, 10]
  # The weights are those of step 6: the same as a fixed run of 6 steps.
  fixed = _tiny_model(tiny_data_dir)
  trainer.run_stage(_job(fixed, tiny_data_dir, tmp_path / "fixed", steps=6, learning_rate=0.01),
                    strategy)
  for a, b in zip(fixed.trainable_weights, model.trainable_weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


class _Killed(Exception):
  pass


@pytest.mark.slow
def test_resuming_mid_plateau_gives_the_same_weights_and_decisions(tiny_data_dir, tmp_path):
  strategy = tf.distribute.get_strategy()
  evaluate = stages.dev_evaluator(tiny_data_dir, mod_lib.ALL_MODALITIES, image_size=32)
  rule = _rule(z=1.0, max_steps=16)

  def stage(directory, model, dev):
    job = _job(model, tiny_data_dir, directory, stop=rule, checkpoint_every=100,
               learning_rate=0.01, evaluate_dev=dev)
    return trainer.run_stage(job, strategy)

  whole = _tiny_model(tiny_data_dir)
  straight = stage(tmp_path / "whole", whole, evaluate)

  calls = []

  def dies_at_the_third(model):
    calls.append(1)
    if len(calls) == 3:
      raise _Killed()  # after the checkpoint of step 4, before that of step 6
    return evaluate(model)

  with pytest.raises(_Killed):
    stage(tmp_path / "parts", _tiny_model(tiny_data_dir), dies_at_the_third)
  resumed_model = _tiny_model(tiny_data_dir)
  resumed = stage(tmp_path / "parts", resumed_model, evaluate)
  assert resumed["resumed_from"] == 4
  for key in ("steps", "best_step", "stop_reason", "dev_history"):
    assert resumed[key] == straight[key], key
  for a, b in zip(whole.weights, resumed_model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.slow
def test_drift_is_zero_for_a_frozen_layer_and_positive_for_a_trained_one(tiny_data_dir,
                                                                         tmp_path):
  model = _tiny_model(tiny_data_dir)
  before = drift.snapshot(model)
  assert drift.relative_drift(model, before)["fc6"] == 0.0
  trainer.run_stage(_job(model, tiny_data_dir, tmp_path, steps=3, freeze_upper=True),
                    tf.distribute.get_strategy())
  moved = drift.relative_drift(model, before)
  assert moved["fc6"] == moved["fc7"] == moved["classifier"] == 0.0
  assert moved["nat_conv1"] > 0 and moved["dsc_mlp1"] > 0
  kinds = drift.by_kind(moved)
  assert kinds["fc6"] == 0.0 and kinds["conv1"] > 0
  assert drift.layer_kind("ldr_conv3") == "conv3" and drift.layer_kind("fc7") == "fc7"


PLATEAU_FLAGS = ("--method=bl_individual", "--stop_rule=plateau", "--dev_every=2",
                 "--plateau_patience=3", "--plateau_z=1", "--max_stage_steps=14")


@pytest.mark.slow
def test_kill_9_mid_plateau_and_rerun_reaches_the_same_weights(tiny_data_dir, tmp_path):
  import json
  import os
  import signal
  import subprocess

  from tests.training.checkpoint_wait import wait_for_latest_checkpoint
  from tests.training.test_training_loop import _command, _run, _weights

  cache = tmp_path / "cache"
  _run(_command(tiny_data_dir, tmp_path / "straight", cache, *PLATEAU_FLAGS))
  run_dir = tmp_path / "killed"
  command = _command(tiny_data_dir, run_dir, cache, *PLATEAU_FLAGS)
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_for_latest_checkpoint(run_dir / "ckpt" / "stage_0", 4, process)
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.wait()
  assert not (run_dir / "final.weights.h5").exists(), "killed too late: the run had finished"
  _run(command)
  straight = json.loads((tmp_path / "straight" / "run.json").read_text())["stages"][0]
  resumed = json.loads((run_dir / "run.json").read_text())["stages"][0]
  assert resumed["resumed_from"] >= 4
  for key in ("steps", "best_step", "stop_reason", "dev_history", "dev_accuracy"):
    assert resumed[key] == straight[key], key
  reference = _weights(tmp_path / "straight" / "final.weights.h5")
  again = _weights(run_dir / "final.weights.h5")
  for name in reference:
    np.testing.assert_array_equal(again[name], reference[name], err_msg=name)


def test_the_time_left_is_stated_as_a_bound_under_the_convergence_rule():
  assert trainer.time_left(30) == "30 s left"
  assert trainer.time_left(750, at_most=True) == "at most 12 min left"
  assert trainer.time_left(None) == "time left unknown"
