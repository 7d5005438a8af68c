"""Unit visualisations: top-k order, unit choice, DSC words, masks, files written."""

import json
import os

import numpy as np
import pytest

from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import units


def test_top_k_indices_orders_by_activation_and_keeps_ties_in_record_order():
  values = np.array([0.5, 2.0, 0.0, 2.0, 1.0, 3.0])
  np.testing.assert_array_equal(units.top_k_indices(values, 4), [5, 1, 3, 4])
  np.testing.assert_array_equal(units.top_k_indices(values, 10), [5, 1, 3, 4, 0, 2])
  with pytest.raises(ValueError, match="k: expected a positive integer"):
    units.top_k_indices(values, 0)


def test_choose_units_draws_seeded_subsets_of_live_units_only():
  acts = np.zeros((5, 10), np.float32)
  live = [1, 2, 4, 6, 7, 9]
  acts[3, live] = 1.0
  chosen = units.choose_units(acts, 4, seed=0)
  assert len(chosen) == 4 and set(chosen) <= set(live)
  assert list(chosen) == sorted(chosen)
  np.testing.assert_array_equal(chosen, units.choose_units(acts, 4, seed=0))
  assert any(not np.array_equal(chosen, units.choose_units(acts, 4, seed=s)) for s in (1, 2, 3))
  np.testing.assert_array_equal(units.choose_units(acts, 50, seed=0), live)


def test_characteristic_words_come_from_the_top_paragraphs():
  texts = ["A red lighthouse stands on the rocks.", "The lighthouse beam sweeps the sea.",
           "There is a bed and a lamp.", "A lamp stands beside the bed.",
           "Two chairs and a table."]
  vectorizer, matrix = units.fit_tfidf(texts)
  words = units.characteristic_words(vectorizer, matrix, [0, 1], num_words=3)
  assert words[0][0] == "lighthouse"
  assert all(score > 0 for _, score in words)
  assert [s for _, s in words] == sorted((s for _, s in words), reverse=True)
  assert not {"the", "a", "on"} & {w for w, _ in units.characteristic_words(
      vectorizer, matrix, [0, 1, 2, 3, 4], num_words=50)}
  assert units.fit_tfidf(["", "the a"]) == (None, None)
  assert units.characteristic_words(None, None, [0]) == []


def test_masked_image_keeps_where_the_unit_fires_and_dims_elsewhere():
  image = np.full((8, 8, 3), 1.0, np.float32)
  unit_map = np.array([[2.0, 0.0], [0.0, 0.0]], np.float32)
  masked = units.masked_image(image, unit_map)
  assert masked.dtype == np.uint8 and masked.shape == (8, 8, 3)
  assert masked[0, 0, 0] == 255
  assert masked[7, 7, 0] == round(255 * units.MASK_FLOOR)
  assert masked[0, 0, 0] > masked[3, 3, 0] > masked[7, 7, 0]
  silent = units.masked_image(image, np.zeros((2, 2), np.float32))
  assert (silent == round(255 * units.MASK_FLOOR)).all()
  np.testing.assert_array_equal(units.masked_image(image), np.full((8, 8, 3), 255, np.uint8))


def test_bad_layers_and_activations_without_images_are_refused_before_loading(tmp_path):
  with pytest.raises(ValueError, match="layers: expected some of pool5, fc6, fc7"):
    units.write_unit_visualisations(tmp_path / "nowhere", tmp_path, layers=("conv3",))
  acts = _constructed_activations()
  acts[mod_lib.CLP].inputs = None
  with pytest.raises(ValueError, match=r"activations\['clp'\]: no images.*keep_inputs=True"):
    units.write_unit_visualisations(tmp_path / "nowhere", tmp_path, activations=acts)


def _constructed_activations(n=8, units_count=3, size=8):
  """Activations where unit 1 of pool5 and fc7 fires on known examples of each modality.

  Example i of every modality has activation i/10 on unit 1 (so the top is n-1, n-2, ...),
  except example 2, which gets the top value 5.0 (so the top is 2, n-1, n-2, ...). Unit 0
  is dead; unit 2 fires weakly everywhere. The DSC paragraphs of the top examples speak
  of lighthouses; the others of beds.
  """
  from cmp_tf.analysis.activations import Activations
  rng = np.random.default_rng(0)
  acts = {}
  for modality in mod_lib.ALL_MODALITIES:
    strength = np.arange(n, dtype=np.float32) / 10
    strength[2] = 5.0
    maps = np.zeros((n, 2, 2, units_count), np.float32)
    maps[:, 0, 1, 1] = strength
    maps[:, :, :, 2] = 0.01
    fc7 = np.zeros((n, units_count), np.float32)
    fc7[:, 1] = strength
    fc7[:, 2] = 0.01
    texts = [""] * n
    if modality == mod_lib.DSC:
      texts = ["A tall lighthouse on the cliff." if i in (2, n - 1, n - 2) else
               "A bed with a pillow." for i in range(n)]
    image = mod_lib.is_image(modality)
    acts[modality] = Activations(
        modality=modality, pool5_maps=maps, pool5=maps.max(axis=(1, 2)), fc6=fc7.copy(),
        fc7=fc7, labels=np.arange(n) % 2, categories=np.array(["coast", "bedroom"] * (n // 2)),
        example_ids=np.array([f"{modality}/val/x/{i:05d}" for i in range(n)]),
        object_names=[()] * n, object_boxes=[np.zeros((0, 4), np.float32)] * n, texts=texts,
        inputs=(rng.random((n, size, size, 3), dtype=np.float32) if image
                else rng.random((n, 4), dtype=np.float32)))
  return acts


@pytest.mark.slow
def test_constructed_activations_give_the_known_top_examples_and_words(tiny_run, tmp_path):
  acts = _constructed_activations()
  result = units.write_unit_visualisations(tiny_run, tmp_path, num_units=5, top_k=3,
                                           activations=acts, num_words=2)
  for layer in ("pool5", "fc7"):
    entry = result["layers"][layer]
    assert entry["num_units"] == 3 and entry["num_live"] == 2
    assert [u["unit"] for u in entry["units"]] == [1, 2]
    unit = entry["units"][0]
    for modality in mod_lib.ALL_MODALITIES:
      top = unit["top"][modality]
      assert [t["example_id"][-1] for t in top] == ["2", "7", "6"]
      assert [t["activation"] for t in top] == [5.0, 0.7, 0.6]
    # The top paragraphs are the same sentence: equal scores, so alphabetical order.
    assert [w for w, _ in unit["dsc_words"]] == ["cliff", "lighthouse"]
    assert unit["png"] == f"units/{layer}/unit_0001.png"
  with open(tmp_path / result["json"]) as f:
    assert json.load(f) == json.loads(json.dumps(result))


@pytest.mark.slow
def test_write_unit_visualisations_on_a_tiny_run(tiny_run, tmp_path):
  from PIL import Image

  from cmp_tf.analysis import activations as activations_lib
  result = units.write_unit_visualisations(tiny_run, tmp_path / "analysis", num_units=3,
                                           top_k=5, seed=1)
  acts = activations_lib.run_activations(tiny_run, max_examples=None, keep_inputs=True)
  assert set(result["layers"]) == {"pool5", "fc7"}
  for layer, entry in result["layers"].items():
    assert 1 <= len(entry["units"]) <= 3
    for unit in entry["units"]:
      path = tmp_path / "analysis" / unit["png"]
      width, height = Image.open(path).size
      cell = 2 * acts[mod_lib.NAT].inputs.shape[1]
      assert width >= 5 * cell and height >= 4 * cell
      assert set(unit["top"]) == set(mod_lib.ALL_MODALITIES)
      for modality, top in unit["top"].items():
        values = acts[modality].units(layer)[:, unit["unit"]]
        expected = np.sort(values)[::-1][:5]
        np.testing.assert_allclose([t["activation"] for t in top], expected, atol=1e-4)
      assert isinstance(unit["dsc_words"], list)
  assert os.path.isfile(tmp_path / "analysis" / "units" / "units.json")
  assert not [p for p in os.listdir(tmp_path / "analysis" / "units" / "pool5")
              if not p.endswith(".png")]
