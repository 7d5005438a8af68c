"""TensorBoard projector files: a hand-made embedding, and a run's validation examples."""

import io
import os

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins import projector as tb_projector

from cmp_tf.serving import projector


def _png(colour, size=20):
  buffer = io.BytesIO()
  Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
  return buffer.getvalue()


def _config(log_dir):
  config = tb_projector.ProjectorConfig()
  with open(os.path.join(log_dir, "projector_config.pbtxt")) as f:
    text_format.Parse(f.read(), config)
  return config


def test_write_projector_files(tmp_path):
  vectors = np.arange(15, dtype=np.float32).reshape(5, 3) / 7
  metadata = {"modality": ["NAT", "NAT", "CLP", "DSC", "DSC"],
              "category": ["kitchen", "bed\troom", "coast", "kitchen", "coast"]}
  sprites = [_png((255, 0, 0)), _png((0, 255, 0)), Image.new("RGB", (7, 9), (0, 0, 255)),
             "A kitchen with a table.", "Waves on a beach."]
  out = projector.write_projector(str(tmp_path), vectors, metadata, sprites=sprites,
                                  tensor_name="fc7", thumb=16)
  tensors = np.loadtxt(out["tensors"], delimiter="\t", ndmin=2)
  np.testing.assert_allclose(tensors, vectors, rtol=1e-5)
  lines = open(out["metadata"], encoding="utf-8").read().splitlines()
  assert lines[0] == "modality\tcategory" and lines[2] == "NAT\tbed room" and len(lines) == 6
  with Image.open(out["sprite"]) as sheet:
    assert sheet.size == (48, 48)  # 3 x 3 tiles of 16 px
    assert sheet.getpixel((8, 8)) == (255, 0, 0) and sheet.getpixel((40, 8))[2] > 200
  config = _config(str(tmp_path))
  (embedding,) = config.embeddings
  assert embedding.tensor_path == "tensors.tsv" and list(embedding.tensor_shape) == [5, 3]
  assert embedding.metadata_path == "metadata.tsv"
  assert embedding.sprite.image_path == "sprite.png"
  assert list(embedding.sprite.single_image_dim) == [16, 16]
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path))


def test_sprite_tiles_shrink_to_fit_tensorboards_limit():
  sheet, size = projector.sprite_sheet([Image.new("RGB", (4, 4))] * 20, thumb=2000)
  assert size == 8192 // 5 and sheet.width <= projector.MAX_SPRITE_SIDE


@pytest.mark.parametrize("kwargs, message", [
    (dict(embeddings=np.zeros((0, 3))), "non-empty"),
    (dict(metadata={"modality": ["NAT"]}), "has 1 values for 2 points"),
    (dict(sprites=["x"]), "1 sprites for 2 points"),
    (dict(embeddings=np.array([[np.nan], [0.0]])), "NaN"),
])
def test_bad_projector_input(tmp_path, kwargs, message):
  args = dict(embeddings=np.zeros((2, 3)), metadata={"modality": ["NAT", "CLP"]})
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    projector.write_projector(str(tmp_path), args.pop("embeddings"), args.pop("metadata"),
                              **args)


@pytest.mark.slow
def test_run_projector_shows_every_modality(tiny_run, tmp_path):
  out = projector.write_run_projector(tiny_run, str(tmp_path), per_modality=7)
  lines = open(out["metadata"], encoding="utf-8").read().splitlines()[1:]
  modalities = [line.split("\t")[0] for line in lines]
  assert modalities == [m for m in ("NAT", "CLP", "SPT", "LDR", "DSC") for _ in range(7)]
  categories = [line.split("\t")[1] for line in lines[:7]]
  assert len(set(categories)) == 6  # balanced over the 6 tiny categories
  tensors = np.loadtxt(out["tensors"], delimiter="\t", ndmin=2)
  assert tensors.shape[0] == 35
  norms = np.linalg.norm(tensors, axis=1)
  assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
  assert os.path.isfile(out["sprite"])
