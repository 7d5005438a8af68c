"""Recipes, settings and flagfiles: fast checks, no training."""

import os
import subprocess
import sys

import pytest
from absl import flags

from cmp_tf import paths
from cmp_tf.training import config as config_lib
from cmp_tf.training import plateau, recipes

# data_*: dataset builds; scale_*: given after a method's flagfile to train at another scale.
METHOD_FLAGFILES = sorted(p for p in paths.CONFIGS_DIR.glob("*.flags")
                          if not p.name.startswith(("data_", "scale_")))


def _parse_flagfile(path, *extra):
  from cmp_tf import train
  fv = train.define_flags(flags.FlagValues())
  here = os.getcwd()
  os.chdir(paths.REPO_ROOT)  # nested --flagfile paths are relative to the checkout
  try:
    fv(["train", f"--flagfile={path}", *extra])
  finally:
    os.chdir(here)
  return train.config_from_flags(fv)


def test_every_method_has_a_flagfile_of_its_name_on_the_base():
  for method in recipes.METHOD_NAMES:
    path = paths.CONFIGS_DIR / f"{method}.flags"
    config = _parse_flagfile(path)
    assert config.method == method and not config.zero_shot
    assert _parse_flagfile(path, "--zero_shot").recipe().zero_shot
    lines = [line for line in path.read_text().splitlines() if line.startswith("--")]
    assert lines[0] == "--flagfile=configs/base.flags", path.name
    assert len(lines) <= 16, f"{path.name} sets more than its differences"


def test_every_method_trains_under_one_rule():
  """Shipped: every stage of every method under the same convergence rule and cap; with
  --stop_rule=fixed, every method the same budget of steps."""
  rules, caps, budgets = set(), set(), {}
  for method in recipes.METHOD_NAMES:
    path = paths.CONFIGS_DIR / f"{method}.flags"
    config = _parse_flagfile(path)
    rules |= {stage.stop for stage in config.recipe().stages}
    caps |= {stage.steps for stage in config.recipe().stages}
    budgets[method] = _parse_flagfile(path, "--stop_rule=fixed").recipe().total_steps
  assert len(rules) == 1 and isinstance(next(iter(rules)), plateau.PlateauRule), rules
  assert caps == {next(iter(rules)).max_steps}
  assert len(set(budgets.values())) == 1, budgets


@pytest.mark.parametrize("path", METHOD_FLAGFILES, ids=lambda p: p.name)
def test_flagfile_parses_validates_and_resolves_its_recipe(path):
  config = _parse_flagfile(path).validate()
  recipe = config.recipe()
  assert recipe.method == config.method
  assert recipe.zero_shot == config.zero_shot
  assert config.data_is_default  # flagfiles name no machine-specific data path
  text = path.read_text()
  assert text.lstrip().startswith("#"), f"{path.name} should open with a comment"
  assert "_zeroshot" not in path.name, "zero-shot is the --zero_shot flag, not a flagfile"


def test_c_flagfile_is_method_c_on_the_default_data():
  config = _parse_flagfile(paths.CONFIGS_DIR / "c.flags").validate()
  assert config.method == "c" and not config.zero_shot
  assert config.resolved_data_config().name == "data_default.flags"
  assert config.gmm_components == 100


def test_quick_flagfile_is_a_tiny_method_c_run():
  config = _parse_flagfile(paths.CONFIGS_DIR / "quick.flags").validate()
  assert config.method == "c"
  assert config.image_variant == "alexnet_tiny" and config.resolved_image_size == 32
  assert config.resolved_data_config().name == "data_tiny.flags"


def test_the_places205_scale_flagfile_scales_every_step_count_of_a_method():
  base = _parse_flagfile(paths.CONFIGS_DIR / "c.flags")
  scaled = _parse_flagfile(paths.CONFIGS_DIR / "c.flags",
                           f"--flagfile={paths.CONFIGS_DIR / 'scale_places205.flags'}").validate()
  assert scaled.method == "c" and scaled.resolved_data_config().name == "data_places205.flags"
  assert scaled.image_variant == base.image_variant and scaled.batch_size == base.batch_size
  for name in ("source_steps", "dev_every", "max_stage_steps", "steps", "frozen_steps"):
    factor = getattr(scaled, name) / getattr(base, name)
    assert 6.5 <= factor <= 7.0, (name, factor)  # 205 / 30 categories = 6.8
  assert scaled.plateau_patience == base.plateau_patience
  assert scaled.plateau_z == base.plateau_z


def test_recipes_follow_the_paper():
  settings = config_lib.TrainConfig(frozen_steps=7, steps=11).recipe_settings()
  ind = recipes.build_recipe("bl_individual", settings).stages
  assert len(ind) == 1 and not ind[0].share_upper and ind[0].init == recipes.INIT_SOURCE
  scratch = recipes.build_recipe("bl_shared_upper_scratch", settings).stages
  assert scratch[0].init == recipes.INIT_SCRATCH and scratch[0].share_upper
  assert not recipes.build_recipe("bl_shared_upper_scratch", settings).needs_source
  tune = recipes.build_recipe("a_tune", settings).stages
  assert len(tune) == 1 and tune[0].freeze_upper and tune[0].steps == 7
  free = recipes.build_recipe("a_tune_free", settings).stages
  assert [s.freeze_upper for s in free] == [True, False]
  assert free[1].init == recipes.INIT_PREVIOUS and free[1].steps == 11
  for kind, method in (("gaussian", "b_gaussian"), ("gmm", "b_gmm")):
    (stage,) = recipes.build_recipe(method, settings).stages
    assert not stage.share_upper and stage.init == recipes.INIT_SOURCE
    assert {(p.kind, p.layer) for p in stage.priors} == {
        (kind, "pool5"), (kind, "fc6"), (kind, "fc7")}
  c = recipes.build_recipe("c", settings).stages
  assert c[0].freeze_upper and not c[0].priors
  assert not c[1].freeze_upper and c[1].share_upper
  assert {p.kind for p in c[1].priors} == {"gmm"}


def test_a_zero_weight_leaves_a_layer_unregularised():
  settings = config_lib.TrainConfig(lambda_pool5=0.0, lambda_fc6=0.5,
                                    lambda_fc7=0.0).recipe_settings()
  (stage,) = recipes.build_recipe("b_gmm", settings).stages
  assert [(p.layer, p.weight) for p in stage.priors] == [("fc6", 0.5)]


@pytest.mark.parametrize("overrides, flag", [
    ({"method": "d_magic"}, "method"),
    ({"image_variant": "vgg16"}, "image_variant"),
    ({"modalities": ["nat", "sketch"]}, "modalities"),
    ({"lambda_fc6": -1.0}, "lambda_fc6"),
    ({"gmm_components": 0}, "gmm_components"),
    ({"steps": 0}, "steps"),
    ({"frozen_steps": -3}, "frozen_steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"source_steps": 0}, "source_steps"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"dropout": 1.0}, "dropout"),
    ({"strategy": "tpu"}, "strategy"),
    ({"data_dir": "/nonexistent/cmp_tf_data"}, "data_dir"),
    ({"source_weights": "/nonexistent/source.weights.h5"}, "source_weights"),
    ({"method": "b_gmm", "lambda_pool5": 0.0, "lambda_fc6": 0.0,
      "lambda_fc7": 0.0}, "lambda_pool5, --lambda_fc6, --lambda_fc7"),
    ({"jit_compile": True}, "jit_compile"),
])
def test_bad_settings_name_the_flag(overrides, flag):
  config = config_lib.TrainConfig(**overrides)
  with pytest.raises(config_lib.ConfigError, match=f"^--{flag}: ") as info:
    config.validate()
  assert ", --".join(info.value.flags) == flag


def test_data_dir_without_manifest_is_rejected(tmp_path):
  config = config_lib.TrainConfig(data_dir=str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match="--data_dir: .*no manifest.json"):
    config.validate()


def test_train_command_rejects_bad_flags_before_any_work(tmp_path):
  env = dict(os.environ, CMP_TF_CACHE=str(tmp_path / "cache"))
  for args, flag in ((["--method=d_magic"], "--method"),
                     (["--lambda_fc7=-0.5"], "--lambda_fc7"),
                     (["--modalities=nat,photo"], "--modalities")):
    result = subprocess.run(
        [sys.executable, "-m", "cmp_tf.train", f"--run_dir={tmp_path / 'run'}", *args],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert flag in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()


def test_effective_flags_reparse_to_the_same_config(tmp_path):
  from cmp_tf import train
  config = config_lib.TrainConfig(method="a_tune_free", zero_shot=True, lambda_fc6=0.25,
                                  modalities=["nat", "dsc"], run_dir=str(tmp_path / "r"))
  path = tmp_path / "flags.txt"
  path.write_text(train.effective_flags(config))
  again = _parse_flagfile(path)
  assert again.to_dict() == {**config.to_dict(), "run_dir": str(tmp_path / "r")}


def test_post_training_hooks_run_on_the_chief_only(tmp_path, monkeypatch):
  from cmp_tf import train
  calls = []
  monkeypatch.setattr("cmp_tf.eval.evaluation.evaluate_run",
                      lambda run_dir: calls.append(run_dir))
  monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, '
                     '"task": {"type": "worker", "index": 1}}')
  assert train.run_post_hooks(str(tmp_path), export=False) == {}
  assert calls == []
  monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, '
                     '"task": {"type": "worker", "index": 0}}')
  train.run_post_hooks(str(tmp_path), export=False)
  assert calls == [str(tmp_path)]


def test_per_dimension_prior_weights_divide_lambda_by_the_width():
  from cmp_tf.priors import PriorParams
  from cmp_tf.training import stages
  (stage,) = config_lib.TrainConfig(method="b_gmm", lambda_pool5=0.5, lambda_fc6=0.25,
                                    lambda_fc7=0.0).recipe().stages
  fitted = {("gmm", "pool5"): PriorParams.unfitted("gmm", "pool5", 1024, 3),
            ("gmm", "fc6"): PriorParams.unfitted("gmm", "fc6", 512, 3)}
  assert stages.prior_weights(stage, fitted, per_dimension=False) == {"pool5": 0.5, "fc6": 0.25}
  assert stages.prior_weights(stage, fitted, per_dimension=True) == {
      "pool5": 0.5 / 1024, "fc6": 0.25 / 512}
