"""The trainer on the tiny dataset: frozen layers, NaN handling, replicas, kill and resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from cmp_tf import cpu, finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.data import input_pipeline
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.models import cross_modal
from cmp_tf.models import spec as spec_lib
from cmp_tf.training import plateau, recipes, runner, stages, trainer
from tests.training.checkpoint_wait import latest_checkpoint_step, wait_for_latest_checkpoint


def _tiny_model(data_dir, *, share_upper=True, dropout=0.5):
  manifest = manifest_lib.read_manifest(data_dir)
  spec = stages.model_spec(manifest=manifest, modalities=mod_lib.ALL_MODALITIES,
                           image_variant="alexnet_tiny", image_size=32, dropout=dropout,
                           share_upper=share_upper)
  return stages.build_model(spec, tf.distribute.get_strategy(), seed=1)


def _job(model, data_dir, tmp_path, *, steps=None, stop=None, make_dataset=None,
         freeze_upper=False, name="test", checkpoint_every=2, learning_rate=0.05,
         evaluate_dev=None):
  """A job of every modality on the tiny data: `steps` fixed steps, or the rule `stop`."""
  strategy = tf.distribute.get_strategy()
  stage = recipes.Stage(name, mod_lib.ALL_MODALITIES, share_upper=True,
                        init=recipes.INIT_SCRATCH, stop=stop or plateau.FixedSteps(steps),
                        learning_rate=learning_rate, momentum=0.9, weight_decay=5e-4,
                        freeze_upper=freeze_upper)
  return stages.stage_job(
      stage, model, index=0, per_replica_batch=4,
      make_dataset=make_dataset or stages.dataset_factory(
          strategy, data_dir=data_dir, modalities=mod_lib.ALL_MODALITIES,
          per_replica_batch=4, image_size=32, exclude_categories=(), seed=0,
          stage_key="test"),
      checkpoint_dir=str(tmp_path / "ckpt"),
      loop=stages.LoopSettings(checkpoint_every=checkpoint_every, progress=False),
      evaluate_dev=evaluate_dev)


@pytest.mark.slow
def test_frozen_stage_leaves_the_shared_upper_bit_identical(tiny_data_dir, tmp_path):
  model = _tiny_model(tiny_data_dir)
  upper = [v for layer in cross_modal.upper_layers(model) for v in layer.weights]
  before_upper = [v.numpy().copy() for v in upper]
  before_branch = {m: [v.numpy().copy() for layer in cross_modal.branch_layers(model, m)
                       for v in layer.weights] for m in mod_lib.ALL_MODALITIES}
  trainer.run_stage(_job(model, tiny_data_dir, tmp_path, steps=3, freeze_upper=True),
                    tf.distribute.get_strategy())
  for v, old in zip(upper, before_upper):
    assert np.array_equal(v.numpy(), old), f"frozen {v.path} changed"
  for m, old_values in before_branch.items():
    new_values = [v.numpy() for layer in cross_modal.branch_layers(model, m) for v in layer.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(new_values, old_values)), (
        f"the {m} branch did not train")


def test_freezing_the_upper_leaves_its_variables_out_of_the_trained_set(tiny_data_dir):
  for share_upper in (True, False):
    model = _tiny_model(tiny_data_dir, share_upper=share_upper)
    frozen = {id(v) for layer in cross_modal.upper_layers(model) for v in layer.trainable_weights}
    assert len(frozen) == 6 * (1 if share_upper else len(mod_lib.ALL_MODALITIES))
    trained = stages.trainable_variables(model, freeze_upper=True)
    assert not frozen & {id(v) for v in trained}
    assert len(trained) == len(model.trainable_variables) - len(frozen)
    assert len(stages.trainable_variables(model, freeze_upper=False)) == len(
        model.trainable_variables)


@pytest.mark.slow
def test_bl_individual_trains_every_modality_its_own_upper_copy(tiny_data_dir, tmp_path):
  model = _tiny_model(tiny_data_dir, share_upper=False)
  upper = {m: [model.get_layer(f"{m}_{name}") for name in ("fc6", "fc7", "classifier")]
           for m in mod_lib.ALL_MODALITIES}
  before = {m: [w.numpy().copy() for layer in layers for w in layer.weights]
            for m, layers in upper.items()}
  trainer.run_stage(_job(model, tiny_data_dir, tmp_path, steps=3), tf.distribute.get_strategy())
  after = {m: [w.numpy() for layer in layers for w in layer.weights]
           for m, layers in upper.items()}
  for m in mod_lib.ALL_MODALITIES:
    assert all(not np.array_equal(a, b) for a, b in zip(before[m][::2], after[m][::2])), (
        f"a kernel of {m}'s upper copy did not train")
  assert not np.array_equal(after["nat"][0], after["clp"][0])  # the copies are separate


@pytest.mark.slow
def test_nan_loss_stops_naming_stage_and_step_and_keeps_the_checkpoint(tiny_data_dir, tmp_path):
  strategy = tf.distribute.get_strategy()
  modalities = mod_lib.ALL_MODALITIES

  def make_dataset(start_step):
    def dataset_fn(context):
      ds = input_pipeline.joint_dataset(tiny_data_dir, modalities, batch_size=4, seed=0,
                                        start_step=start_step, input_context=context)

      def poison(step, batch):  # from step 3 on, the NAT images are NaN
        x, y = batch
        return {**x, "nat": tf.where(step >= 2, x["nat"] * np.nan, x["nat"])}, y

      return ds.enumerate(start_step).map(poison)
    return strategy.distribute_datasets_from_function(dataset_fn)

  model = _tiny_model(tiny_data_dir)
  job = _job(model, tiny_data_dir, tmp_path, steps=4, make_dataset=make_dataset,
             name="poisoned")
  with pytest.raises(trainer.NonFiniteLossError, match=r"stage 0 \(poisoned\).* step 3 of 4"):
    trainer.run_stage(job, strategy)
  saved = tf.train.get_checkpoint_state(str(tmp_path / "ckpt"))
  assert saved.model_checkpoint_path.endswith("ckpt-2")
  assert len(saved.all_model_checkpoint_paths) == 1
  # The kept checkpoint holds finite weights.
  for name, _ in tf.train.list_variables(saved.model_checkpoint_path):
    if name.startswith("model_variables/"):
      value = tf.train.load_variable(saved.model_checkpoint_path, name)
      assert np.all(np.isfinite(value)), name


# --- The train command in subprocesses (slow) -------------------------------------------


def _weights(path):
  out = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                 if isinstance(obj, h5py.Dataset) else None)
  return out


def _command(data_dir, run_dir, cache_dir, *extra):
  return [sys.executable, "-m", "cmp_tf.train", f"--data_dir={data_dir}",
          f"--run_dir={run_dir}", f"--cache_dir={cache_dir}", "--image_variant=alexnet_tiny",
          "--source_steps=6", "--source_batch_size=8", "--batch_size=4", "--log_every=2",
          "--checkpoint_every=2", "--prior_samples=96", "--gmm_components=3",
          "--gmm_max_iter=20", "--noevaluate", "--noexport", *extra]


def _run(command, timeout=300):
  result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


C_FLAGS = ("--method=c", "--frozen_steps=4", "--steps=6")


@pytest.fixture(scope="module")
def reference_run(tiny_data_dir, tmp_path_factory):
  """An uninterrupted method-C run (source network and GMM priors included)."""
  root = tmp_path_factory.mktemp("reference")
  _run(_command(tiny_data_dir, root / "run", root / "cache", *C_FLAGS))
  return root


@pytest.mark.slow
def test_train_command_writes_a_complete_run(reference_run):
  import json
  run = reference_run / "run"
  state = json.loads((run / "run.json").read_text())
  assert state["status"] == "complete" and state["method_name"] == "C: Tune + StatReg (GMM)"
  assert [s["name"] for s in state["stages"]] == ["tune", "free_statreg"]
  for stage in state["stages"]:
    assert set(stage["val_accuracy"]) == set(mod_lib.ALL_MODALITIES)
  assert state["source"]["nat_val_accuracy"] is not None
  assert state["runtime"]["onednn"] == cpu.onednn_enabled()  # the child ran as this process
  assert state["runtime"]["cpu"] == cpu.model()
  assert (run / "final.weights.h5").exists() and (run / "spec.json").exists()
  assert "--method=c" in (run / "flags.txt").read_text()
  spec = spec_lib.CrossModalSpec.from_config(json.loads((run / "spec.json").read_text()))
  assert spec.priors is None and spec.share_upper
  loaded = finished_run.load_run(str(run))
  model, loaded_spec = loaded.model, loaded.spec
  assert loaded_spec == spec
  saved = _weights(run / "final.weights.h5")
  assert any(np.array_equal(model.get_layer("fc6").kernel.numpy(), v) for v in saved.values())
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(run / "logs"))
  events.Reload()
  tags = set(events.Tags()["tensors"])
  assert {"loss/dsc", "accuracy/nat", "prior_nll/fc6", "learning_rate", "stage"} <= tags


@pytest.mark.slow
def test_kill_and_resume_reaches_the_same_weights(reference_run, tiny_data_dir, tmp_path):
  run_dir, cache = tmp_path / "run", reference_run / "cache"  # the cached source is reused
  command = _command(tiny_data_dir, run_dir, cache, *C_FLAGS)
  stage_1 = run_dir / "ckpt" / "stage_1"
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    latest = wait_for_latest_checkpoint(stage_1, 2, process)
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.wait()
  assert not (run_dir / "final.weights.h5").exists(), "killed too late: the run had finished"
  latest = latest_checkpoint_step(stage_1)  # it may have saved another before it died
  result = _run(command)
  assert "stage 0 (tune) already complete" in result.stdout
  assert f"steps {latest}..6" in result.stdout
  resumed = _weights(run_dir / "final.weights.h5")
  reference = _weights(reference_run / "run" / "final.weights.h5")
  assert resumed.keys() == reference.keys()
  for name in reference:
    np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)


@pytest.mark.slow
def test_a_run_taking_a_finished_stage_ends_with_the_weights_of_one_trained_whole(
    reference_run, tiny_data_dir, tmp_path):
  """C's first stage taken from a run that stopped after it (the reference C run cut back to
  its first stage, as an A: Tune run is): only the second stage trains, and the final weights
  are the reference's, bit for bit."""
  donor = tmp_path / "donors" / "c_first_stage"
  donor.mkdir(parents=True)
  state = json.loads((reference_run / "run" / "run.json").read_text())
  state["stages"] = state["stages"][:1]
  state["recipe"]["stages"] = state["recipe"]["stages"][:1]
  (donor / "run.json").write_text(json.dumps(state))
  shutil.copyfile(reference_run / "run" / "stage_0.weights.h5", donor / "stage_0.weights.h5")
  run_dir = tmp_path / "run"
  result = _run(_command(tiny_data_dir, run_dir, reference_run / "cache", *C_FLAGS,
                         f"--stage_donors={donor.parent}"))
  assert f"stage 0 (tune) taken from {donor}" in result.stdout
  assert "stage 1 (free_statreg) done" in result.stdout
  state = json.loads((run_dir / "run.json").read_text())
  assert state["stages"][0][finished_run.REUSED_FROM] == str(donor)
  assert finished_run.REUSED_FROM not in state["stages"][1]
  reference = _weights(reference_run / "run" / "final.weights.h5")
  taken = _weights(run_dir / "final.weights.h5")
  assert taken.keys() == reference.keys()
  for name in reference:
    np.testing.assert_array_equal(taken[name], reference[name], err_msg=name)


@pytest.mark.slow
def test_one_and_two_replicas_agree(reference_run, tiny_data_dir, tmp_path):
  source = next((reference_run / "cache" / "source").glob("*/source.weights.h5"))
  finals = []
  for replicas, batch in ((1, 4), (2, 2)):
    run_dir = tmp_path / f"run{replicas}"
    _run(_command(tiny_data_dir, run_dir, tmp_path / "cache", "--method=bl_shared_upper",
                  "--steps=4", "--dropout=0", f"--source_weights={source}",
                  f"--cpu_replicas={replicas}", f"--batch_size={batch}"))
    finals.append(_weights(run_dir / "final.weights.h5"))
  one, two = finals
  for name in one:
    np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
  moved = _weights(source)
  assert any(not np.allclose(one[n], moved[n]) for n in moved if n in one), "nothing trained"


@pytest.mark.slow
def test_the_checkpoint_interval_does_not_change_the_weights(reference_run, tiny_data_dir,
                                                             tmp_path):
  source = next((reference_run / "cache" / "source").glob("*/source.weights.h5"))
  finals = []
  for every in (10, 30):
    run_dir = tmp_path / f"every{every}"
    _run(_command(tiny_data_dir, run_dir, tmp_path / "cache", "--method=a_tune_free",
                  "--frozen_steps=12", "--steps=35", f"--source_weights={source}",
                  f"--checkpoint_every={every}"))
    finals.append(_weights(run_dir / "final.weights.h5"))
  ten, thirty = finals
  assert ten.keys() == thirty.keys()
  for name in ten:
    np.testing.assert_array_equal(thirty[name], ten[name], err_msg=name)


@pytest.mark.slow
def test_a_stage_resumed_in_process_matches_one_run_through(tiny_data_dir, tmp_path):
  """Dropout's generator state and the data stream both continue from the checkpoint."""
  strategy = tf.distribute.get_strategy()
  whole = _tiny_model(tiny_data_dir)
  trainer.run_stage(_job(whole, tiny_data_dir, tmp_path / "whole", steps=5,
                         checkpoint_every=5), strategy)
  parts = _tiny_model(tiny_data_dir)
  trainer.run_stage(_job(parts, tiny_data_dir, tmp_path / "parts", steps=3,
                         checkpoint_every=3), strategy)
  resumed = _tiny_model(tiny_data_dir)  # a fresh process would build a fresh model
  result = trainer.run_stage(_job(resumed, tiny_data_dir, tmp_path / "parts", steps=5,
                                  checkpoint_every=3), strategy)
  assert result["resumed_from"] == 3 and result["trained_steps"] == 2
  for a, b in zip(whole.weights, resumed.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_building_a_model_leaves_the_global_random_state_alone(tiny_data_dir):
  import random
  random.seed(7)
  np.random.seed(7)
  expected = (random.random(), np.random.rand())
  random.seed(7)
  np.random.seed(7)
  first = _tiny_model(tiny_data_dir)
  assert (random.random(), np.random.rand()) == expected
  second = _tiny_model(tiny_data_dir)
  for a, b in zip(first.weights, second.weights):  # the seed alone sets the weights
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.slow
def test_source_weights_of_another_architecture_are_a_clear_error(tiny_data_dir, tmp_path):
  spec = spec_lib.CrossModalSpec(modalities=("nat",), num_classes=3, image_variant="alexnet_tiny")
  bad = str(tmp_path / "other.weights.h5")
  cross_modal.build_cross_modal_model(spec).save_weights(bad)
  result = subprocess.run(_command(tiny_data_dir, tmp_path / "run", tmp_path / "cache",
                                   "--method=bl_individual", "--steps=2",
                                   f"--source_weights={bad}"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "cmp_tf.train: error: " in result.stderr and "does not fit the network" in result.stderr
  assert "Traceback" not in result.stderr


# --- Faults a user meets: each a clear message and exit status, no traceback (slow) ---------


@pytest.mark.slow
def test_a_second_training_on_a_busy_run_directory_is_refused_at_once(reference_run,
                                                                      tiny_data_dir, tmp_path):
  run_dir, cache = tmp_path / "run", reference_run / "cache"
  first = subprocess.Popen(_command(tiny_data_dir, run_dir, cache, "--method=bl_shared_upper",
                                    "--steps=300"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    lock = run_dir / ".lock"
    while not (lock.exists() and lock.read_text().strip()):
      assert first.poll() is None, first.stderr.read()[-2000:]
      time.sleep(0.05)
    second = subprocess.run(_command(tiny_data_dir, run_dir, cache, "--method=a_tune",
                                     "--frozen_steps=3"), capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"the run directory {run_dir} is in use by process {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr  # refused, not queued behind the lock
  finally:
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
  import json
  state = json.loads((run_dir / "run.json").read_text())
  assert state["status"] == "complete" and state["method"] == "bl_shared_upper"


@pytest.mark.slow
def test_a_run_directory_under_a_file_is_a_flag_error(tiny_data_dir, tmp_path):
  (tmp_path / "file").write_text("x")
  result = subprocess.run(_command(tiny_data_dir, tmp_path / "file" / "run", tmp_path / "cache",
                                   "--method=a_tune"), capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 2
  assert "cmp_tf.train: error: --run_dir: cannot create" in result.stderr
  assert "is a file, not a directory" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "cache").exists()  # nothing written before the check


@pytest.mark.slow
def test_a_diverged_run_says_so_in_run_json(reference_run, tiny_data_dir, tmp_path):
  import json
  run_dir = tmp_path / "run"
  result = subprocess.run(_command(tiny_data_dir, run_dir, reference_run / "cache",
                                   "--method=bl_shared_upper", "--steps=20",
                                   "--learning_rate=1e12"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 3, result.stderr[-2000:]
  assert "cmp_tf.train: training diverged: stage 0 (finetune): non-finite loss" in result.stderr
  state = json.loads((run_dir / "run.json").read_text())
  assert state["status"] == "diverged" and "NonFiniteLossError" in state["error"]


def test_weights_and_priors_are_as_readable_as_any_file(reference_run):
  import stat
  umask = os.umask(0o022)
  os.umask(umask)
  expected = 0o666 & ~umask
  made = [reference_run / "run" / "final.weights.h5",
          *(reference_run / "cache" / "source").glob("*/source.weights.h5"),
          *(reference_run / "cache" / "source").glob("*/priors/*.npz")]
  assert len(made) >= 3
  for path in made:
    assert stat.S_IMODE(os.stat(path).st_mode) == expected, path


@pytest.mark.slow
def test_a_flipped_byte_in_a_shard_is_named_before_training(tiny_data_dir, tmp_path,
                                                            damaged_copy):
  data, shard = damaged_copy(tiny_data_dir, "clp")
  result = subprocess.run(_command(data, tmp_path / "run", tmp_path / "cache",
                                   "--method=a_tune", "--frozen_steps=2"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  assert f"cmp_tf.train: error: {shard}: shard content differs from its checksum" in (
      result.stderr)
  assert "Traceback" not in result.stderr and not (tmp_path / "cache" / "source").exists()


@pytest.mark.slow
def test_a_cache_filled_with_other_operational_settings_gives_the_same_weights(
    tiny_data_dir, tmp_path):
  """The cached source network does not depend on how often its trainer checkpointed or
  logged, so whichever run filled the cache, a method trains the same weights."""
  finals = []
  for name, filler in (("a", ("--checkpoint_every=3", "--log_every=1")),
                       ("b", ("--checkpoint_every=5", "--log_every=4"))):
    cache = tmp_path / f"cache_{name}"
    _run(_command(tiny_data_dir, tmp_path / f"fill_{name}", cache, "--method=a_tune",
                  "--frozen_steps=1", *filler))
    run_dir = tmp_path / f"run_{name}"
    _run(_command(tiny_data_dir, run_dir, cache, "--method=bl_individual", "--steps=4"))
    finals.append(_weights(run_dir / "final.weights.h5"))
  for name in finals[0]:
    np.testing.assert_array_equal(finals[1][name], finals[0][name], err_msg=name)


def test_an_unwritable_directory_is_a_flag_error_before_anything_is_written(tmp_path,
                                                                           monkeypatch):
  from cmp_tf.training import config as config_lib
  runner.check_writable(tmp_path / "new" / "run", "run_dir")  # creatable: fine
  monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only mount reads
  with pytest.raises(config_lib.ConfigError, match=f"^--cache_dir: {tmp_path} is not writable"):
    runner.check_writable(tmp_path / "cache", "cache_dir")
  assert not (tmp_path / "new").exists() and not (tmp_path / "cache").exists()


def test_a_run_resumed_on_other_kernels_says_so_and_records_it(tmp_path, capsys):
  import json

  from cmp_tf.training.config import TrainConfig
  config = TrainConfig(method="bl_individual", data_dir=str(tmp_path / "data"),
                       run_dir=str(tmp_path / "run"))
  first = {"cpu": "A", "onednn": True, "intra_op_threads": 0, "allocator": "x"}
  runner.open_run(config.run_dir, config, "f", "--method=bl_individual", runtime=first)
  runner.open_run(config.run_dir, config, "f", "", runtime={**first, "allocator": "y"})
  assert "note" not in capsys.readouterr().out  # the allocator leaves the arithmetic alone
  other = {**first, "onednn": False}
  state = runner.open_run(config.run_dir, config, "f", "", runtime=other)
  assert "resumed with other onednn (True -> False)" in capsys.readouterr().out
  assert state["runtime"] == first and state["resumed_with_other_runtime"] == [other]
  assert json.loads((tmp_path / "run" / "run.json").read_text())["runtime"] == first
