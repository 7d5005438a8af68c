"""The unit-alignment score on constructed activations whose answer is known."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import alignment
from cmp_tf.analysis.activations import Activations

MODALITIES = mod_lib.ALL_MODALITIES
OBJECTS = ["bed", "car", "sink", "tree"]


def test_auc_matrix_is_scikit_learns_roc_auc_with_ties():
  rng = np.random.default_rng(0)
  acts = np.maximum(rng.normal(size=(40, 6)), 0)  # ReLU: many tied zeros
  acts[:, 5] = 0.0  # a dead unit
  presence = rng.random((40, 3)) < 0.4
  auc = alignment.auc_matrix(acts, presence, min_positives=1, min_negatives=1)
  assert auc.shape == (6, 3)
  for u in range(6):
    for o in range(3):
      assert auc[u, o] == pytest.approx(roc_auc_score(presence[:, o], acts[:, u]))
  assert np.all(auc[5] == 0.5)


def test_objects_seen_too_rarely_or_too_often_are_skipped():
  presence = np.zeros((20, 3), bool)
  presence[:4, 0] = True  # 4 positives
  presence[:10, 1] = True  # 10 / 10
  presence[:17, 2] = True  # 3 negatives
  auc = alignment.auc_matrix(np.arange(20.0)[:, None], presence, min_positives=5,
                             min_negatives=5)
  assert np.isnan(auc[0, 0]) and np.isnan(auc[0, 2]) and auc[0, 1] == 0.0
  best, value = alignment.best_detectors(auc)
  assert best.tolist() == [1] and value.tolist() == [0.0]
  best, value = alignment.best_detectors(np.full((2, 3), np.nan))
  assert best.tolist() == [alignment.NO_OBJECT] * 2 and np.all(np.isnan(value))


def test_object_presence_and_vocabulary():
  names = [("sink", "bed", "sink"), (), ("tree",)]
  vocabulary = alignment.object_vocabulary(names, [("car",)])
  assert vocabulary == ["bed", "car", "sink", "tree"]
  presence = alignment.object_presence(names, vocabulary)
  assert presence.tolist() == [[True, False, True, False], [False] * 4,
                               [False, False, False, True]]


def _constructed(n=80, seed=0):
  """Five modalities, four objects; units whose alignment is known by construction.

  unit 0: fires exactly when "sink" is present, in every modality -> aligned to sink.
  unit 1: fires for "car" in NAT only, noise elsewhere -> not aligned.
  unit 2: "bed" in NAT and CLP only -> aligned only when one other modality suffices.
  unit 3: dead (always 0) -> not aligned.
  unit 4: "tree" in NAT, CLP, SPT; "bed" in LDR; noise in DSC -> aligned to tree.
  unit 5: weakly tied to "car" everywhere (AUC ~0.7) -> aligned only below 0.75.
  """
  rng = np.random.default_rng(seed)
  presence, acts = {}, {}
  for m in MODALITIES:
    p = rng.random((n, len(OBJECTS))) < 0.5
    a = np.zeros((n, 6))
    col = {name: p[:, OBJECTS.index(name)].astype(float) for name in OBJECTS}
    noise = lambda: rng.random(n)  # noqa: E731
    a[:, 0] = col["sink"]
    a[:, 1] = col["car"] if m == mod_lib.NAT else noise()
    a[:, 2] = col["bed"] if m in (mod_lib.NAT, mod_lib.CLP) else noise()
    a[:, 3] = 0.0
    a[:, 4] = {mod_lib.LDR: col["bed"], mod_lib.DSC: noise()}.get(m, col["tree"])
    # AUC 0.7 exactly: positives score 1 with prob 0.7, negatives with prob 0.3.
    pos = col["car"] > 0
    a[pos, 5] = rng.permutation(_share(pos.sum(), 0.7))
    a[~pos, 5] = rng.permutation(_share((~pos).sum(), 0.3))
    presence[m], acts[m] = p, a
  return acts, presence


def _share(count, fraction):
  ones = int(round(count * fraction))
  return np.array([1.0] * ones + [0.0] * (count - ones))


def test_constructed_units_have_the_known_alignment():
  acts, presence = _constructed()
  score = alignment.alignment_score(acts, presence, OBJECTS)
  assert score["aligned"].tolist() == [True, False, False, False, True, False]
  assert score["object"] == ["sink", None, None, None, "tree", None]
  assert score["fraction"] == pytest.approx(2 / 6)
  assert score["detected_objects"] == {"sink": 1, "tree": 1}
  assert score["best"][mod_lib.LDR]["object"][4] == "bed"
  assert score["best"][mod_lib.NAT]["auc"][0] == pytest.approx(1.0)


def test_threshold_and_other_modalities_are_arguments():
  acts, presence = _constructed()
  one_other = alignment.alignment_score(acts, presence, OBJECTS, min_other_modalities=1)
  assert one_other["aligned"].tolist() == [True, False, True, False, True, False]
  all_four = alignment.alignment_score(acts, presence, OBJECTS, min_other_modalities=4)
  assert all_four["aligned"].tolist() == [True, False, False, False, False, False]
  lenient = alignment.alignment_score(acts, presence, OBJECTS, threshold=0.6)
  assert lenient["aligned"][5] and lenient["object"][5] == "car"
  assert 0.65 < lenient["best"][mod_lib.NAT]["auc"][5] < 0.75


def test_shuffled_objects_give_no_alignment():
  acts, presence = _constructed(n=200)
  shuffled = alignment.permuted_presence(presence, seed=3)
  assert alignment.alignment_score(acts, shuffled, OBJECTS)["num_aligned"] == 0


def test_inconsistent_inputs_are_refused():
  acts, presence = _constructed()
  with pytest.raises(ValueError, match="reference modality 'nat'"):
    alignment.alignment_score({m: a for m, a in acts.items() if m != mod_lib.NAT},
                              {m: p for m, p in presence.items() if m != mod_lib.NAT}, OBJECTS)
  with pytest.raises(ValueError, match="different unit counts"):
    alignment.alignment_score({**acts, mod_lib.CLP: acts[mod_lib.CLP][:, :3]}, presence, OBJECTS)
  with pytest.raises(ValueError, match="3 object names"):
    alignment.alignment_score(acts, presence, OBJECTS[:3])


def _activations(modality, units, names):
  n = len(units)
  maps = np.zeros((n, 1, 1, units.shape[1]), np.float32) + units[:, None, None, :]
  return Activations(modality=modality, pool5_maps=maps, pool5=units, fc6=units, fc7=units,
                     labels=np.zeros(n, np.int64), categories=np.array(["x"] * n),
                     example_ids=np.array([f"{modality}/{i}" for i in range(n)]),
                     object_names=names, object_boxes=[np.zeros((len(o), 4)) for o in names],
                     texts=[""] * n)


def test_run_alignment_leaves_out_modalities_without_objects():
  acts, presence = _constructed()
  runs = {}
  for m in MODALITIES:
    names = [tuple(o for o, p in zip(OBJECTS, row) if p) for row in presence[m]]
    if m == mod_lib.DSC:
      names = [()] * len(names)
    runs[m] = _activations(m, acts[m], names)
  result = alignment.run_alignment(runs, layers=("pool5", "fc7"))
  assert result["modalities_without_objects"] == [mod_lib.DSC]
  assert result["objects"] == OBJECTS
  fc7 = result["layers"]["fc7"]
  assert fc7["num_units"] == 6 and fc7["num_aligned"] == 2
  assert [u["unit"] for u in fc7["units"]] == [0, 4]
  assert fc7["units"][1]["best"][mod_lib.LDR] == "bed"
  assert 0 <= fc7["chance_fraction"] <= 1
  # Presence independent of the (single) category: the within-category score is the same.
  assert fc7["within_category"]["num_aligned"] == 2
  assert result["layers"]["pool5"]["fraction"] == fc7["fraction"]
  with pytest.raises(ValueError, match="ground-truth objects in NAT"):
    alignment.run_alignment({m: _activations(m, acts[m], [()] * len(acts[m])) for m in runs})


def test_within_category_auc_ignores_objects_that_only_come_with_a_category():
  rng = np.random.default_rng(1)
  labels = np.repeat([0, 1, 2], 20)
  snow = labels == 1  # snow is in every category-1 scene and nowhere else
  lamp = rng.random(60) < 0.5  # lamps vary within every category
  presence = np.stack([snow, lamp], axis=1)
  category_unit = (labels == 1).astype(float) + 0.01 * rng.random(60)
  lamp_unit = lamp.astype(float) + 0.01 * rng.random(60)
  acts = np.stack([category_unit, lamp_unit], axis=1)
  plain = alignment.auc_matrix(acts, presence, min_positives=5, min_negatives=5)
  within = alignment.auc_matrix(acts, presence, groups=labels, min_positives=5,
                                min_negatives=5)
  assert plain[0, 0] == 1.0 and np.isnan(within[0, 0]) and np.isnan(within[1, 0])
  assert within[1, 1] == 1.0
  # The stratified AUC pools the pairs of each category.
  expected = sum(roc_auc_score(lamp[labels == c], category_unit[labels == c])
                 * lamp[labels == c].sum() * (~lamp[labels == c]).sum() for c in range(3))
  pairs = sum(lamp[labels == c].sum() * (~lamp[labels == c]).sum() for c in range(3))
  assert within[0, 1] == pytest.approx(expected / pairs)


def test_shuffling_within_groups_keeps_each_groups_objects():
  presence = {mod_lib.NAT: np.eye(6, dtype=bool)[[0, 0, 1, 1, 2, 2]]}
  groups = {mod_lib.NAT: np.array([0, 0, 1, 1, 2, 2])}
  shuffled = alignment.permuted_presence(presence, seed=0, groups=groups)[mod_lib.NAT]
  assert shuffled.tolist() == presence[mod_lib.NAT].tolist()
  everywhere = alignment.permuted_presence(
      {mod_lib.NAT: np.arange(50)[:, None] < 25}, seed=0)[mod_lib.NAT]
  assert everywhere.sum() == 25 and not np.array_equal(everywhere[:, 0], np.arange(50) < 25)
