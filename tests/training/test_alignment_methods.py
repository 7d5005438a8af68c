"""The alignment methods (CORAL, MMD, DANN, CDANN, cross-modal SupCon) as recipes: their
stages, their flags, training with the term on the global batch, resuming, replicas."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.domain_alignment import names
from cmp_tf.training import config as config_lib
from cmp_tf.training import plateau, recipes, stages, trainer
from tests.training.test_training_loop import _weights


def test_each_alignment_method_is_c_with_its_term_in_place_of_the_prior():
  c = config_lib.TrainConfig(method="c").recipe()
  for term in (names.CORAL, names.MMD, names.DANN, names.CDANN, names.SUPCON):
    recipe = config_lib.TrainConfig(method=term).recipe()
    tune, free = recipe.stages
    assert tune == c.stages[0] and recipe.needs_source
    assert free.share_upper and free.init == recipes.INIT_PREVIOUS and not free.priors
    assert free.stop == c.stages[1].stop and free.learning_rate == c.stages[1].learning_rate
    (use,) = free.alignment
    assert (use.term, use.layer) == (term, "fc7") and free.aligned_layers == ("fc7",)
    assert use.weight == getattr(config_lib.TrainConfig(), f"lambda_{term}")
  supcon = config_lib.TrainConfig(method="supcon", supcon_temperature=0.5,
                                  alignment_layer="fc6").recipe().stages[1].alignment[0]
  assert (supcon.temperature, supcon.layer) == (0.5, "fc6")
  assert "alignment" not in c.stages[1].to_dict()  # earlier recipes are written as before
  ours = config_lib.TrainConfig(method="c_proxy", lambda_proxy=2.0).recipe()
  assert ours.stages[0] == c.stages[0] and ours.stages[1].priors == c.stages[1].priors
  (proxy,) = ours.stages[1].alignment
  assert (proxy.term, proxy.layer, proxy.weight, proxy.temperature) == ("proxy", "fc7", 2.0, 0.1)
  ours = config_lib.TrainConfig(method="c_cdann", lambda_cdann=0.5).recipe()
  assert ours.stages[0] == c.stages[0] and ours.stages[1].priors == c.stages[1].priors
  (cdann,) = ours.stages[1].alignment
  assert (cdann.term, cdann.layer, cdann.weight) == ("cdann", "fc7", 0.5)


@pytest.mark.parametrize("overrides, flag", [
    ({"method": "dann", "lambda_dann": 0.0}, "lambda_dann"),
    ({"method": "c", "lambda_mmd": -1.0}, "lambda_mmd"),
    ({"method": "supcon", "supcon_temperature": 0.0}, "supcon_temperature"),
    ({"method": "c_proxy", "lambda_proxy": 0.0}, "lambda_proxy"),
    ({"method": "c_proxy", "proxy_temperature": -1.0}, "proxy_temperature"),
    ({"method": "c_cdann", "lambda_cdann": 0.0}, "lambda_cdann"),
    ({"method": "coral", "alignment_layer": "fc8"}, "alignment_layer"),
])
def test_bad_alignment_settings_name_the_flag(overrides, flag):
  with pytest.raises(config_lib.ConfigError, match=f"--{flag}"):
    config_lib.TrainConfig(**overrides).validate()


def test_an_alignment_stage_needs_a_shared_upper():
  with pytest.raises(ValueError, match="shared upper"):
    recipes.Stage("x", ("nat", "clp"), share_upper=False, init=recipes.INIT_SOURCE,
                  stop=plateau.FixedSteps(1), learning_rate=0.1, momentum=0.9,
                  weight_decay=0.0,
                  alignment=(recipes.AlignmentUse(names.CORAL, "fc7", 1.0),))


def test_settings_added_later_match_an_earlier_run_at_their_defaults():
  new = config_lib.TrainConfig(method="c").to_dict()
  old = {k: v for k, v in new.items() if not k.startswith("lambda_") or k in (
      "lambda_pool5", "lambda_fc6", "lambda_fc7")}
  assert config_lib.settings_diff(old, new) == []
  assert config_lib.settings_diff(old, {**new, "lambda_mmd": 2.0}) == ["lambda_mmd"]


def _stage(term, steps):
  return recipes.Stage(f"free_{term}", mod_lib.ALL_MODALITIES, share_upper=True,
                       init=recipes.INIT_SCRATCH, stop=plateau.FixedSteps(steps),
                       learning_rate=0.05, momentum=0.9, weight_decay=5e-4,
                       alignment=(recipes.AlignmentUse(term, "fc7", 0.5),))


def _model_and_job(data_dir, tmp_path, term, steps, checkpoint_every):
  strategy = tf.distribute.get_strategy()
  stage = _stage(term, steps)
  manifest = manifest_lib.read_manifest(data_dir)
  spec = stages.model_spec(manifest=manifest, modalities=mod_lib.ALL_MODALITIES,
                           image_variant="alexnet_tiny", image_size=32, dropout=0.5,
                           share_upper=True, exposed_layers=stage.aligned_layers)
  model = stages.build_model(spec, strategy, seed=1)
  job = stages.stage_job(
      stage, model, index=0, per_replica_batch=4,
      make_dataset=stages.dataset_factory(
          strategy, data_dir=data_dir, modalities=mod_lib.ALL_MODALITIES,
          per_replica_batch=4, image_size=32, exclude_categories=(), seed=0,
          stage_key="test"),
      checkpoint_dir=str(tmp_path / "ckpt"),
      loop=stages.LoopSettings(checkpoint_every=checkpoint_every, progress=False),
      discriminators=stages.build_discriminators(stage, model, strategy, seed=3))
  return model, job


@pytest.mark.slow
@pytest.mark.parametrize("term", names.ALIGNMENT_TERMS)
def test_every_term_trains_and_resumes_to_one_run_through(tiny_data_dir, tmp_path, term):
  """The term trains the shared upper and is reported; a fresh model (as a killed and restarted process builds) resumes from the checkpoint
  to the weights of one run through; a discriminator's weights and momentum are in it."""
  strategy = tf.distribute.get_strategy()
  whole, job = _model_and_job(tiny_data_dir, tmp_path / "whole", term, 4, 4)
  before = whole.get_layer("fc7").kernel.numpy().copy()
  through = trainer.run_stage(job, strategy)
  assert np.isfinite(through["final"][f"alignment_loss/{term}"])  # reported as it trains
  assert not np.array_equal(whole.get_layer("fc7").kernel.numpy(), before)
  assert (term in names.ADVERSARIAL_TERMS) == bool(job.extra_variables)
  _, job = _model_and_job(tiny_data_dir, tmp_path / "parts", term, 2, 2)
  trainer.run_stage(job, strategy)
  resumed, job = _model_and_job(tiny_data_dir, tmp_path / "parts", term, 4, 2)
  result = trainer.run_stage(job, strategy)
  assert result["resumed_from"] == 2 and result["trained_steps"] == 2
  for a, b in zip(whole.weights, resumed.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def _train(data_dir, run_dir, cache_dir, *extra):
  command = [sys.executable, "-m", "cmp_tf.train", f"--data_dir={data_dir}",
             f"--run_dir={run_dir}", f"--cache_dir={cache_dir}",
             "--image_variant=alexnet_tiny", "--source_steps=6", "--source_batch_size=8",
             "--checkpoint_every=2", "--stop_rule=fixed", "--frozen_steps=2", "--steps=3",
             "--dropout=0", "--noevaluate", "--noexport", *extra]
  result = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_one_and_two_replicas_train_the_same_weights(tiny_data_dir, tmp_path):
  """The term is computed on the gathered global batch, so splitting the batch over two
  replicas changes nothing (CDANN: features, labels and a discriminator; supcon passed the
  same check when it was written)."""
  method = "cdann"
  # One replica trains the source network too; two load that one (its per-replica batch
  # would otherwise make another).
  _train(tiny_data_dir, tmp_path / "run1", tmp_path / "cache", f"--method={method}",
         "--cpu_replicas=1", "--batch_size=4")
  source = next((tmp_path / "cache" / "source").glob("*/source.weights.h5"))
  _train(tiny_data_dir, tmp_path / "run2", tmp_path / "cache", f"--method={method}",
         f"--source_weights={source}", "--cpu_replicas=2", "--batch_size=2")
  finals = [_weights(tmp_path / name / "final.weights.h5") for name in ("run1", "run2")]
  one, two = finals
  assert one.keys() == two.keys()
  for name in one:
    np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_ours_c_with_cdann_trains_prior_and_discriminator_in_one_stage(tiny_data_dir, tmp_path):
  """The one stage that holds both a GMM prior and a discriminator trains end to end."""
  _train(tiny_data_dir, tmp_path / "run", tmp_path / "cache", "--method=c_cdann",
         "--batch_size=4", "--gmm_components=3", "--prior_samples=96", "--gmm_max_iter=20")
  weights = _weights(tmp_path / "run" / "final.weights.h5")
  assert weights and all(np.isfinite(w).all() for w in weights.values())
