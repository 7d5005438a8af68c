"""transfer_weights: by name between stages, and from the NAT source network."""

import numpy as np
import pytest
from model_fixtures import tiny_spec

from cmp_tf.models.cross_modal import build_cross_modal_model
from cmp_tf.models.spec import CrossModalSpec
from cmp_tf.models.transfer import transfer_weights

CONVS = [f"conv{i}" for i in range(1, 6)]


def weights_of(model, name):
  return model.get_layer(name).get_weights()


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("share_upper", [True, False])
def test_from_source_fills_every_image_branch_and_upper_copy(share_upper):
  source = build_cross_modal_model(tiny_spec(modalities=("nat",)))
  spec = tiny_spec(modalities=("nat", "clp", "spt", "ldr", "dsc"), share_upper=share_upper)
  target = build_cross_modal_model(spec)
  dsc_before = {name: weights_of(target, name)
                for name in ("dsc_mlp1", "dsc_mlp2", "dsc_pool5_projection")}
  copied = transfer_weights(source, target, from_source=True)
  for modality in ("nat", "clp", "spt", "ldr"):
    for conv in CONVS:
      assert f"{modality}_{conv}" in copied
      assert_same(weights_of(target, f"{modality}_{conv}"), weights_of(source, f"nat_{conv}"))
  owners = [""] if share_upper else [f"{m}_" for m in spec.modalities]
  for owner in owners:
    for layer in ("fc6", "fc7", "classifier"):
      assert owner + layer in copied
      assert_same(weights_of(target, owner + layer), weights_of(source, layer))
  for name, before in dsc_before.items():
    assert name not in copied
    assert_same(weights_of(target, name), before)


def test_plain_transfer_copies_same_names_only():
  first = build_cross_modal_model(tiny_spec(modalities=("nat", "clp", "dsc")))
  second = build_cross_modal_model(tiny_spec(modalities=("clp", "dsc", "ldr")))
  ldr_before = weights_of(second, "ldr_conv1")
  copied = set(transfer_weights(first, second))
  assert {"clp_conv1", "dsc_mlp1", "dsc_pool5_projection", "fc6", "classifier"} <= copied
  assert not any(name.startswith(("nat_", "ldr_")) for name in copied)
  assert_same(weights_of(second, "dsc_mlp2"), weights_of(first, "dsc_mlp2"))
  assert_same(weights_of(second, "ldr_conv1"), ldr_before)


def test_mismatched_shapes_and_missing_source_fail_clearly():
  small = build_cross_modal_model(tiny_spec(modalities=("nat",)))
  other_classes = build_cross_modal_model(
      CrossModalSpec(modalities=("nat",), num_classes=9, image_variant="alexnet_tiny"))
  with pytest.raises(ValueError, match="'classifier' has weights"):
    transfer_weights(small, other_classes)
  no_nat = build_cross_modal_model(tiny_spec(modalities=("clp",)))
  with pytest.raises(ValueError, match="has no 'nat' branch"):
    transfer_weights(no_nat, small, from_source=True)


@pytest.mark.parametrize("share_upper", [True, False])
def test_fresh_dsc_upper_keeps_its_initialisation_only_where_it_has_its_own(share_upper):
  from cmp_tf.training import stages
  source = build_cross_modal_model(tiny_spec(modalities=("nat",)))
  target = build_cross_modal_model(tiny_spec(modalities=("nat", "clp", "dsc"),
                                             share_upper=share_upper))
  owner = "" if share_upper else "dsc_"
  before = weights_of(target, owner + "classifier")
  copied = stages.copy_weights(source, target, from_source=True, modalities=("nat", "clp", "dsc"),
                               fresh_upper=("dsc",))
  if share_upper:  # the shared upper is the source's for DSC too
    assert "fc6" in copied
    assert_same(weights_of(target, "classifier"), weights_of(source, "classifier"))
  else:
    assert not any(name.startswith("dsc_") for name in copied)
    assert_same(weights_of(target, "dsc_classifier"), before)
    assert_same(weights_of(target, "clp_classifier"), weights_of(source, "classifier"))
  # without the switch every upper copy must be filled (nothing left out by accident)
  plain = build_cross_modal_model(tiny_spec(modalities=("nat", "dsc"), share_upper=share_upper))
  assert owner + "fc7" in stages.copy_weights(source, plain, from_source=True,
                                              modalities=("nat", "dsc"))
