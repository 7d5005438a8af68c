"""One tiny trained and exported run, shared by the serving tests of a session."""

import os

import pytest


@pytest.fixture(scope="session")
def tiny_run(tiny_data_dir, tmp_path_factory):
  """A finished alexnet_tiny run (one short stage, all five modalities) on the tiny dataset."""
  from cmp_tf.training import config as config_lib
  from cmp_tf.training import runner

  root = tmp_path_factory.mktemp("serving_run")
  config = config_lib.TrainConfig(
      method="bl_shared_upper_scratch", data_dir=tiny_data_dir, run_dir=str(root / "run"),
      cache_dir=str(root / "cache"), image_variant="alexnet_tiny", steps=4, batch_size=4,
      checkpoint_every=4, log_every=4, jit_compile=False, strategy="default",
      evaluate=False, export=False)
  return runner.run_training(config, progress=False)


@pytest.fixture(scope="session")
def exported_run(tiny_run):
  """(run_dir, export summary) after export_run."""
  from cmp_tf.serving import export

  return tiny_run, export.export_run(tiny_run, verbose=False)


@pytest.fixture(scope="session")
def run_model(tiny_run):
  from cmp_tf import finished_run

  run = finished_run.load_run(tiny_run)
  return run.model, run.spec


@pytest.fixture(scope="session")
def val_records(tiny_data_dir):
  """{modality: [ExampleRecord]} of the tiny dataset's validation split."""
  from cmp_tf import modalities as mod_lib
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.data import tfrecord_io

  manifest = manifest_lib.read_manifest(tiny_data_dir)
  return {m: tfrecord_io.read_records(manifest_lib.shard_paths(manifest, tiny_data_dir, m, "val"))
          for m in mod_lib.ALL_MODALITIES}


@pytest.fixture
def write_png(tmp_path):
  """Writes PNG bytes to a file in tmp_path; returns its path."""
  def write(data, name="query.png"):
    path = os.path.join(tmp_path, name)
    with open(path, "wb") as f:
      f.write(data)
    return path
  return write
