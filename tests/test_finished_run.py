"""The one reader of a run directory: what it refuses, and the weights check before Keras."""

import dataclasses
import json

import numpy as np
import pytest

from cmp_tf import finished_run
from cmp_tf.models import cross_modal
from cmp_tf.models import spec as spec_lib

SPEC = spec_lib.CrossModalSpec(modalities=("nat", "clp", "dsc"), num_classes=4,
                             image_variant="alexnet_tiny", text_dim=12, share_upper=False)


def _saved(tmp_path, spec=SPEC, seed=0):
  model = cross_modal.build_cross_modal_model(spec, seed=seed)
  path = str(tmp_path / f"{seed}.weights.h5")
  model.save_weights(path)
  return model, path


def test_weights_of_the_same_architecture_load_exactly(tmp_path):
  saved, path = _saved(tmp_path, seed=3)
  loaded = finished_run.build_and_load(SPEC, path)
  for a, b in zip(saved.weights, loaded.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize("change, message", [
    ({"text_dim": 16}, r"dsc_mlp1/kernel is \(16, 16\) in the network but \(12, 12\) in the file"),
    ({"num_classes": 5}, r"\w+_classifier/kernel is \(\d+, 5\) in the network but \(\d+, 4\)"),
    ({"share_upper": True}, r"the file holds \d+ layers with weights, the network \d+"),
])
def test_weights_of_another_architecture_name_the_layer_and_both_shapes(tmp_path, change,
                                                                        message):
  _, path = _saved(tmp_path)
  other = cross_modal.build_cross_modal_model(dataclasses.replace(SPEC, **change))
  with pytest.raises(finished_run.RunError, match=message):
    finished_run.load_weights(other, path)


def test_a_truncated_weights_file_is_named(tmp_path):
  _, path = _saved(tmp_path)
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 3])
  with pytest.raises(finished_run.RunError, match="not a readable weights file"):
    finished_run.load_weights(cross_modal.build_cross_modal_model(SPEC), path)


def test_a_directory_that_is_no_finished_run_says_what_is_missing(tmp_path):
  with pytest.raises(finished_run.RunError, match="no such directory"):
    finished_run.check_finished(tmp_path / "missing")
  with pytest.raises(finished_run.RunError, match="not a run directory"):
    finished_run.check_finished(tmp_path)
  (tmp_path / "run.json").write_text("{not json")
  with pytest.raises(finished_run.RunError, match="run.json is not valid JSON"):
    finished_run.check_finished(tmp_path)
  (tmp_path / "run.json").write_text(json.dumps({"status": "running", "stages": [],
                                                 "recipe": {"stages": [{}, {}]}}))
  with pytest.raises(finished_run.RunError, match=r"not finished .*0 of 2 stages.*flags.txt"):
    finished_run.check_finished(tmp_path)
  (tmp_path / "run.json").write_text(json.dumps({"status": "complete"}))
  with pytest.raises(finished_run.RunError, match="complete but has no spec.json"):
    finished_run.check_finished(tmp_path)


def test_layers_without_weights_may_differ(tmp_path):
  saved, path = _saved(tmp_path, spec=dataclasses.replace(SPEC, dropout=0.5))
  loaded = finished_run.build_and_load(dataclasses.replace(SPEC, dropout=0.0), path)
  for a, b in zip(saved.get_layer("nat_fc6").weights, loaded.get_layer("nat_fc6").weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_recipe_settings_name_the_rate_and_every_regulariser_s_weight():
  stage = {"learning_rate": 0.003, "priors": [], "alignment": []}
  free = {**stage, "priors": [{"kind": "gmm", "layer": layer, "weight": 1e-4}
                              for layer in ("pool5", "fc6", "fc7")],
          "alignment": [{"term": "cdann", "layer": "fc7", "weight": 1.0, "temperature": 0.1},
                        {"term": "proxy", "layer": "fc7", "weight": 10.0, "temperature": 0.1}]}
  state = {"recipe": {"stages": [stage, free]}}
  assert finished_run.recipe_settings(state) == (
      "lr 0.003; GMM prior 0.0001 (pool5, fc6, fc7); cdann 1 (fc7); "
      "proxy 10, temperature 0.1 (fc7)")
  two_rates = {"recipe": {"stages": [stage, {**stage, "learning_rate": 0.01}]}}
  assert finished_run.recipe_settings(two_rates) == "lr 0.003 / 0.01"
  assert finished_run.recipe_settings({}) == "-"
