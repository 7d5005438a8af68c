"""The evaluation page's parts: Figure 5's queries and hits, the matrices, the dev curves."""

import numpy as np
import pytest
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.data.features import ExampleRecord
from cmp_tf.eval import plots, retrieval_figure
from cmp_tf.eval.embeddings import FeatureSet


def _sets(rng, per_modality=6, dim=8):
  sets = {}
  for m in mod_lib.ALL_MODALITIES:
    labels = np.arange(per_modality) % 3
    features = rng.normal(size=(per_modality, dim)).astype(np.float32)
    ids = np.array([f"{m}_{i:03d}" for i in range(per_modality)])
    sets[m] = FeatureSet({"fc7": features}, labels, ids)
  return sets


def test_the_queries_are_the_same_for_every_run_of_a_dataset():
  rng = np.random.default_rng(0)
  first, second = _sets(rng), _sets(rng)  # other features, the same ids
  reordered = {}
  for m, s in first.items():  # the same ids in another order
    order = np.arange(len(s))[::-1]
    reordered[m] = type(s)({"fc7": s.features["fc7"][order]}, s.labels[order],
                           s.example_ids[order])
  chosen = retrieval_figure.choose_queries(first)
  assert chosen == retrieval_figure.choose_queries(second) == retrieval_figure.choose_queries(
      reordered)
  assert set(chosen) == set(mod_lib.ALL_MODALITIES)
  assert retrieval_figure.choose_queries(first, seed=1) != chosen


def test_top_hits_rank_by_cosine_similarity():
  sets = _sets(np.random.default_rng(1))
  query_id = "nat_002"
  target = sets["clp"]
  # Make clp_004 the query's direction scaled: cosine 1, the best hit.
  target.features["fc7"][4] = 3.0 * sets["nat"].features["fc7"][2]
  hits = retrieval_figure.top_hits(sets, {"nat": query_id}, k=2)
  assert set(hits["nat"]) == {"clp", "spt", "ldr", "dsc"}
  best_id, best_label, best_score = hits["nat"]["clp"][0]
  assert best_id == "clp_004" and best_label == 1 and best_score == pytest.approx(1.0, abs=1e-6)
  scores = [score for _, _, score in hits["nat"]["spt"]]
  assert len(scores) == 2 and scores[0] >= scores[1]


def test_the_figure_has_a_row_per_query_and_marks_the_category():
  sets = _sets(np.random.default_rng(2))
  queries = retrieval_figure.choose_queries(sets)
  hits = retrieval_figure.top_hits(sets, queries, k=2)
  png = _png_bytes(Image.new("RGB", (16, 16), (10, 200, 10)))
  records = {}
  for m, s in sets.items():
    records[m] = {str(i): ExampleRecord(m, int(label), f"cat{label}", str(i),
                                        image_png=b"" if m == "dsc" else png,
                                        text="a kitchen with a stove" if m == "dsc" else "")
                  for i, label in zip(s.example_ids, s.labels)}
  image = retrieval_figure.draw(queries, hits, records, ["cat0", "cat1", "cat2"], tile=40)
  assert image.width > 40 * 9 and image.height > 40 * 5
  # Each row's query is framed red: the frame's left edge, halfway down the first tile.
  line = 9 + 4  # the smallest font, 9 px, and its spacing
  header, row_pitch = line + 6, 40 + (2 * line + 4) + 6  # tile, two caption lines, padding
  for row in range(5):
    y = header + row * row_pitch + 20
    assert image.getpixel((44 - 2, y)) == (200, 40, 40)


def _png_bytes(image):
  import io
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def test_pair_matrix_reads_the_scores_in_percent_and_leaves_the_diagonal_out():
  modalities = ["nat", "clp", "dsc"]
  scores = {"nat->clp": {"map": 0.25}, "clp->nat": {"map": 0.5}, "dsc->nat": {"map": 0.1}}
  matrix = plots.pair_matrix(scores, modalities)
  assert matrix[0, 1] == 25.0 and matrix[1, 0] == 50.0 and matrix[2, 0] == pytest.approx(10.0)
  assert np.isnan(np.diag(matrix)).all() and np.isnan(matrix[0, 2])


def test_plots_write_pngs(tmp_path):
  history = [{"step": s, "dev_accuracy": {"nat": 0.1 * k, "dsc": 0.05 * k}, "mean": 0.075 * k}
             for k, s in enumerate((100, 200, 300), start=1)]
  stages = [{"name": "tune", "steps": 300, "best_step": 300, "stop_reason": "cap",
             "dev_history": history}, {"name": "fixed", "steps": 10}]
  assert plots.plot_dev_curves(stages, tmp_path / "dev.png")
  assert not plots.plot_dev_curves([stages[1]], tmp_path / "none.png")
  assert not (tmp_path / "none.png").exists()
  matrix = np.full((2, 2), np.nan)
  matrix[0, 1], matrix[1, 0] = 30.0, 12.5
  plots.plot_pair_matrices({"fc7": matrix, "fc6": matrix / 2}, ["nat", "dsc"],
                           tmp_path / "m.png", chance=0.05)
  plots.plot_pair_matrices({"C - BL": matrix - 20}, ["nat", "dsc"], tmp_path / "d.png",
                           difference=True)
  plots.plot_bars({"C": {"ours": (40.0, 2.0)}, "BL": {"ours": (20.0, None)}},
                  tmp_path / "b.png", ylabel="mAP", reference={"C": 32.0}, chance=5.0)
  plots.plot_lines({"C": [(10.0, 1.0), (20.0, None), (30.0, 0.5)]}, ["pool5", "fc6", "fc7"],
                   tmp_path / "l.png", ylabel="mAP")
  for name in ("dev.png", "m.png", "d.png", "b.png", "l.png"):
    with Image.open(tmp_path / name) as image:
      image.load()
      assert image.width > 100 and image.height > 100
  assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "d.png", "dev.png", "l.png",
                                                       "m.png"]  # no temp files left
