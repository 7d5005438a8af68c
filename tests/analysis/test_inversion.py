"""Feature inversion: decoder shapes, training, area downscaling, files written."""

import json

import numpy as np
import pytest

from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import inversion


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_check_image_size_accepts_powers_of_two_times_four(size):
  assert inversion.check_image_size(size) == size


@pytest.mark.parametrize("size", [4, 12, 24, 0, -8, 2.5, True])
def test_check_image_size_refuses_sizes_the_decoder_cannot_make(size):
  with pytest.raises(ValueError, match="image_size: expected"):
    inversion.check_image_size(size)


@pytest.mark.parametrize("size", [8, 32])
def test_decoder_maps_pool5_to_an_image_in_the_unit_range(size):
  decoder = inversion.build_decoder(20, size, input_scale=3.0, seed=0)
  out = decoder(np.random.default_rng(0).normal(size=(2, 20)).astype(np.float32) * 50).numpy()
  assert out.shape == (2, size, size, 3)
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_decoder_starts_from_the_mean_image():
  mean = np.random.default_rng(0).uniform(0.1, 0.9, (8, 8, 3)).astype(np.float32)
  decoder = inversion.build_decoder(6, 8, mean_image=mean, seed=0)
  # A zero input passes the ReLU layers (zero biases) as zeros: only the offset is left.
  np.testing.assert_allclose(decoder(np.zeros((1, 6), np.float32)).numpy()[0], mean, atol=1e-5)
  with pytest.raises(ValueError, match=r"mean_image: expected shape \(8, 8, 3\)"):
    inversion.build_decoder(6, 8, mean_image=mean[:4])


def test_downscale_averages_blocks():
  images = np.zeros((1, 4, 4, 3), np.float32)
  images[0, :2, :2] = 1.0
  images[0, 2:, 2:, 0] = 0.5
  small = inversion.downscale(images, 2)
  assert small.shape == (1, 2, 2, 3)
  np.testing.assert_allclose(small[0, :, :, 0], [[1.0, 0.0], [0.0, 0.5]], atol=1e-6)
  np.testing.assert_allclose(small[0, :, :, 1], [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)
  np.testing.assert_array_equal(inversion.downscale(images, 4), images)


def _learnable_pairs(n=128, size=8, seed=0):
  """Features that say which quadrant of an otherwise dark image is bright."""
  rng = np.random.default_rng(seed)
  quadrant = rng.integers(0, 4, n)
  features = np.eye(4, dtype=np.float32)[quadrant] * 2.0
  images = np.zeros((n, size, size, 3), np.float32)
  half = size // 2
  for i, q in enumerate(quadrant):
    images[i, (q // 2) * half:(q // 2 + 1) * half, (q % 2) * half:(q % 2 + 1) * half] = 0.9
  return features, images


def test_decoder_training_loss_decreases():
  features, images = _learnable_pairs()
  decoder, curve = inversion.train_decoder(features, images, steps=100, batch_size=32, seed=0,
                                           log_every=25)
  assert [step for step, _ in curve] == [25, 50, 75, 100]
  assert curve[-1][1] < 0.5 * curve[0][1]
  recon = inversion.reconstruct(decoder, features)
  assert inversion.mse(recon, images) < 0.5 * inversion.mse(images.mean(axis=0, keepdims=True),
                                                            images)


def test_decoder_training_is_seeded():
  features, images = _learnable_pairs()
  runs = [inversion.train_decoder(features, images, steps=10, batch_size=32, seed=seed,
                                  log_every=5)[1] for seed in (0, 0, 1)]
  np.testing.assert_allclose([loss for _, loss in runs[1]], [loss for _, loss in runs[0]],
                             rtol=1e-4)
  assert runs[2] != runs[0]


def test_train_decoder_refuses_mismatched_pairs():
  with pytest.raises(ValueError, match=r"train_decoder: expected \[N, P\] features"):
    inversion.train_decoder(np.zeros((3, 4)), np.zeros((2, 8, 8, 3)), steps=1)
  with pytest.raises(ValueError, match="steps: expected a positive integer"):
    inversion.train_decoder(np.zeros((2, 4)), np.zeros((2, 8, 8, 3)), steps=0)


def test_write_inversions_refuses_bad_options_before_loading(tmp_path):
  with pytest.raises(ValueError, match="image_size"):
    inversion.write_inversions(tmp_path / "nowhere", tmp_path, image_size=20)
  with pytest.raises(ValueError, match="steps: expected a positive integer"):
    inversion.write_inversions(tmp_path / "nowhere", tmp_path, steps=0)


@pytest.mark.slow
def test_write_inversions_on_a_tiny_run(tiny_run, tmp_path):
  from PIL import Image

  from cmp_tf.analysis import activations as activations_lib
  acts = activations_lib.run_activations(tiny_run, max_examples=None, keep_inputs=True)
  result = inversion.write_inversions(tiny_run, tmp_path / "analysis", image_size=16, steps=40,
                                      seed=0, activations=acts, examples_per_modality=2)
  visual = list(mod_lib.IMAGE_MODALITIES)
  assert result["outputs"] == visual and result["inputs"] == list(mod_lib.ALL_MODALITIES)
  for modality in visual:
    entry = result["decoders"][modality]
    assert entry["train_examples"] > 0 and entry["steps"] == 40
    assert entry["loss_curve"][-1][0] == 40
    assert entry["loss_curve"][-1][1] < entry["loss_curve"][0][1]
    assert 0.0 < entry["val_mse"] < 1.0 and 0.0 < entry["val_mse_mean_image"] < 1.0
  assert [r["modality"] for r in result["rows"]] == [
      m for m in mod_lib.ALL_MODALITIES for _ in range(2)]
  for row in result["rows"]:
    assert row["example_id"] in set(acts[row["modality"]].example_ids)
  width, height = Image.open(tmp_path / "analysis" / result["png"]).size
  assert width >= 5 * 64 and height >= 10 * 64
  with open(tmp_path / "analysis" / result["json"]) as f:
    assert json.load(f) == json.loads(json.dumps(result))


def _nat_activations(with_images):
  from cmp_tf.analysis.activations import Activations
  n = 3
  return {mod_lib.NAT: Activations(
      modality=mod_lib.NAT, pool5_maps=np.zeros((n, 2, 2, 4), np.float32),
      pool5=np.zeros((n, 4), np.float32), fc6=np.zeros((n, 8), np.float32),
      fc7=np.zeros((n, 8), np.float32), labels=np.zeros(n, np.int64),
      categories=np.array(["coast"] * n), example_ids=np.array([f"nat/val/coast/{i}"
                                                                for i in range(n)]),
      object_names=[()] * n, object_boxes=[np.zeros((0, 4), np.float32)] * n, texts=[""] * n,
      inputs=np.zeros((n, 32, 32, 3), np.float32) if with_images else None)}


def test_write_inversions_refuses_activations_without_images_before_loading(tmp_path):
  with pytest.raises(ValueError, match=r"activations\['nat'\]: no images.*keep_inputs=True"):
    inversion.write_inversions(tmp_path / "nowhere", tmp_path,
                               activations=_nat_activations(with_images=False))


@pytest.mark.slow
def test_write_inversions_needs_every_image_branch_in_the_activations(tiny_run, tmp_path):
  with pytest.raises(ValueError, match="activations: no CLP, SPT, LDR"):
    inversion.write_inversions(tiny_run, tmp_path, activations=_nat_activations(True))
