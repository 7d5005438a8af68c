"""Test-wide settings: quiet TensorFlow, deterministic seeds, temp-dir data only."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from cmp_tf import memory  # noqa: E402

memory.keep_freed_memory()  # as every command does (cmp_tf.cli.run)

from cmp_tf.data.build_config import TINY_FLAGFILE  # noqa: E402
from tests.commands import flagfile_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The tiny SynthCMP dataset of configs/data_tiny.flags, built once per test session.

  Read-only for tests: copy it (shutil.copytree) before changing anything in it.
  """
  from cmp_tf.data import build
  data_dir = tmp_path_factory.mktemp("tiny_data")
  build.build_dataset(str(data_dir), flagfile_config(TINY_FLAGFILE, workers=1, report=False),
                      progress=False)
  return str(data_dir)


@pytest.fixture(scope="session", autouse=True)
def seeded_global_random_state():
  """One global seed for the session. cmp_tf's library code seeds its own random choices
  and never touches the global state, but an in-process training turns on TensorFlow's op
  determinism for the whole process, after which an unseeded random op (a test's
  tf.random.normal, a bare keras Dense) is an error unless a global seed is set. (Set once:
  setting it again clears TensorFlow's kernel cache, and with it the resources of
  module-scoped fixtures such as the SentencePiece tokenizer.)"""
  import keras
  keras.utils.set_random_seed(1234)
  yield


@pytest.fixture
def damaged_copy(tmp_path):
  """damaged_copy(data_dir, modality) -> (copy of the dataset, its damaged shard): 16
  bytes flipped in the middle of the modality's first training shard, the size kept."""
  import shutil

  def make(data_dir, modality):
    copy = tmp_path / "damaged_data"
    shutil.copytree(data_dir, copy)
    shard = sorted((copy / modality).glob("train-*.tfrecord"))[0]
    content = bytearray(shard.read_bytes())
    middle = len(content) // 2
    content[middle:middle + 16] = bytes(b ^ 0xFF for b in content[middle:middle + 16])
    shard.write_bytes(bytes(content))
    return copy, shard

  return make
