"""One tiny trained run shared by the analysis tests (training it is most of their cost)."""

import pytest


@pytest.fixture(scope="session")
def tiny_run(tiny_data_dir, tmp_path_factory):
  """An A: Tune run of alexnet_tiny on the tiny dataset, trained for 2 steps per stage."""
  from cmp_tf.training import config as config_lib
  from cmp_tf.training import runner
  root = tmp_path_factory.mktemp("analysis_run")
  config = config_lib.TrainConfig(
      method="a_tune", data_dir=tiny_data_dir, run_dir=str(root / "run"),
      cache_dir=str(root / "cache"), image_variant="alexnet_tiny", steps=2, frozen_steps=2,
      source_steps=2, batch_size=2, source_batch_size=4, checkpoint_every=2, jit_compile=False,
      strategy="default", evaluate=False, export=False)
  return runner.run_training(config, progress=False)
