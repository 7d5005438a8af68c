"""The difficulty report: a linear probe that can tell easy data from hard data."""

import json
import os

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.data import report


def test_linear_probe_separates_blobs_and_not_noise():
  rng = np.random.default_rng(0)
  centres = rng.normal(scale=5.0, size=(4, 10))
  y_train, y_val = rng.integers(0, 4, 200), rng.integers(0, 4, 100)
  x_train = centres[y_train] + rng.normal(size=(200, 10))
  x_val = centres[y_val] + rng.normal(size=(100, 10))
  assert report.linear_probe(x_train, y_train, x_val, y_val) > 0.95
  noise_train, noise_val = rng.normal(size=(200, 10)), rng.normal(size=(100, 10))
  assert report.linear_probe(noise_train, y_train, noise_val, y_val) < 0.5


def test_report_on_tiny_data(tiny_data_dir, tmp_path, capsys):
  result = report.difficulty_report(tiny_data_dir, max_train=50)
  assert result["num_categories"] == 6
  assert abs(result["chance"] - 1 / 6) < 1e-9
  assert list(result["modalities"]) == list(mod_lib.ALL_MODALITIES)
  for modality, row in result["modalities"].items():
    assert 0.0 <= row["val_accuracy"] <= 1.0
    assert row["num_train"] <= 50 and row["num_val"] > 0
    expected = "8x8 RGB pixels" if mod_lib.is_image(modality) else "512-d"
    assert expected in row["input"]
  text = report.format_report(result)
  assert "NAT" in text and "DSC" in text

  out = tmp_path / "copy"
  os.makedirs(out)
  report.write_report(out, result)
  assert json.loads((out / report.REPORT_NAME).read_text()) == result
  assert os.listdir(out) == [report.REPORT_NAME]


def test_cli(tiny_data_dir, capsys):
  assert report.main(["report", f"--data_dir={tiny_data_dir}", "--modalities=dsc",
                      "--max_train=30", "--nowrite"]) == 0
  assert "DSC" in capsys.readouterr().out
  assert not os.path.exists(os.path.join(tiny_data_dir, report.REPORT_NAME))
  assert report.main(["report", "--data_dir=/no/such/dir"]) == 2
  assert "python -m cmp_tf.data.build" in capsys.readouterr().err
