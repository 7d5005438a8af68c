"""The difficulty report: a linear probe that can tell easy data from hard data."""

import json
import os

import numpy as np
import pytest

from cmp_tf import modalities as mod_lib
from cmp_tf.data import difficulty
from tests.commands import run_command


def test_linear_probe_separates_blobs_and_not_noise():
  rng = np.random.default_rng(0)
  centres = rng.normal(scale=5.0, size=(4, 10))
  y_train, y_val = rng.integers(0, 4, 200), rng.integers(0, 4, 100)
  x_train = centres[y_train] + rng.normal(size=(200, 10))
  x_val = centres[y_val] + rng.normal(size=(100, 10))
  assert difficulty.linear_probe(x_train, y_train, x_val, y_val) > 0.95
  noise_train, noise_val = rng.normal(size=(200, 10)), rng.normal(size=(100, 10))
  assert difficulty.linear_probe(noise_train, y_train, noise_val, y_val) < 0.5


def test_report_on_tiny_data(tiny_data_dir, tmp_path, capsys):
  result = difficulty.difficulty_report(tiny_data_dir, max_train=50)
  assert result["num_categories"] == 6
  assert abs(result["chance"] - 1 / 6) < 1e-9
  assert list(result["modalities"]) == list(mod_lib.ALL_MODALITIES)
  for modality, row in result["modalities"].items():
    assert 0.0 <= row["val_accuracy"] <= 1.0
    assert row["num_train"] <= 50 and row["num_val"] > 0
    expected = "8x8 RGB pixels" if mod_lib.is_image(modality) else "512-d"
    assert expected in row["input"]
  text = difficulty.format_report(result)
  assert "NAT" in text and "DSC" in text

  out = tmp_path / "copy"
  os.makedirs(out)
  difficulty.write_report(out, result)
  assert json.loads((out / difficulty.REPORT_NAME).read_text()) == result
  assert os.listdir(out) == [difficulty.REPORT_NAME]


@pytest.mark.slow
def test_command_line(tiny_data_dir):
  result = run_command("cmp_tf.report_data", f"--data_dir={tiny_data_dir}", "--modalities=dsc",
                       "--max_train=30", "--nowrite")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "DSC" in result.stdout
  assert not os.path.exists(os.path.join(tiny_data_dir, difficulty.REPORT_NAME))
  result = run_command("cmp_tf.report_data", "--data_dir=/no/such/dir")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "python -m cmp_tf.build_data" in result.stderr
