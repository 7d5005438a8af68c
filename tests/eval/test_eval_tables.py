"""Paper-shaped tables: a golden Markdown string, missing values, bold, chance, JSON."""

import json

import numpy as np
import pytest

from cmp_tf.eval import retrieval, tables
from cmp_tf.eval import rows as rows_lib

TINY = {
    "BL-Individual": {("nat", "clp"): 0.179, ("clp", "nat"): 0.122},
    "C: Tune + StatReg (GMM)": {("nat", "clp"): 0.132, ("clp", "nat"): 0.146},
}

GOLDEN = """\
**Table 1: mAP (fc7)**

| Method | NAT→CLP | CLP→NAT | Mean mAP |
|---|---:|---:|---:|
| BL-Individual | **17.9** | 12.2 | **15.1** |
| C: Tune + StatReg (GMM) | 13.2 | **14.6** | 13.9 |

Chance level: 0.73 (mAP = the expected AP of a random ranking, exact, per query, averaged as the table averages).
Columns are query→target modality pairs.
"""


def test_golden_markdown_for_a_tiny_two_method_table():
  table = tables.retrieval_table(TINY, chance=0.0073, pairs=[("nat", "clp"), ("clp", "nat")],
                                 title="Table 1: mAP (fc7)")
  assert table.to_markdown() == GOLDEN


def test_json_form_keeps_fractions():
  table = tables.retrieval_table(TINY, chance=0.0073, pairs=[("nat", "clp"), ("clp", "nat")])
  data = json.loads(json.dumps(table.to_dict()))
  assert [c["key"] for c in data["columns"]] == ["nat->clp", "clp->nat", "mean"]
  assert data["rows"][1] == {"method": "C: Tune + StatReg (GMM)",
                             "values": {"nat->clp": 0.132, "clp->nat": 0.146,
                                        "mean": pytest.approx(0.139)}}
  assert data["chance"] == 0.0073 and data["units"] == "fraction"


def test_full_table_1_layout_missing_values_and_bold_ties():
  full = dict.fromkeys(rows_lib.RETRIEVAL_PAIRS, 0.05)
  no_dsc = {p: 0.05 for p in rows_lib.RETRIEVAL_PAIRS if "dsc" not in p}
  table = tables.retrieval_table({"A": full, "SA + PlacesNet": no_dsc}, chance=0.01)
  header, _, row_a, row_sa = table.to_markdown().splitlines()[2:6]
  assert header.startswith("| Method | NAT→CLP | NAT→SPT | NAT→LDR | NAT→DSC | CLP→NAT |")
  assert header.endswith("| DSC→LDR | Mean mAP |")
  assert row_a == "| A | " + " | ".join(["**5.0**"] * 21) + " |"  # equal values: both bold
  cells = row_sa.split(" | ")
  assert cells[4] == "-" and cells[-1] == "- |"  # NAT→DSC and the mean are missing
  assert cells[1] == "**5.0**"
  assert table.to_dict()["rows"][1]["values"]["mean"] is None


def test_rounding_is_half_up_on_the_shown_decimal():
  table = tables.layer_table({"A": {"fc7": 0.1505}, "B": {"fc7": 0.00049}}, chance=0.0073,
                             layers=["fc7"])
  assert "| A | **15.1** |" in table.to_markdown()
  assert "| B | 0.0 |" in table.to_markdown()


def test_single_method_is_not_bold():
  table = tables.layer_table({"C": {"pool5": 0.034, "fc6": 0.111, "fc7": 0.119}}, chance=0.0073)
  assert "| C | 3.4 | 11.1 | 11.9 |" in table.to_markdown()
  assert "| Method | pool5 | fc6 | fc7 |" in table.to_markdown()


def test_zero_shot_tables():
  table4 = tables.zero_shot_classification_table(
      {"A": {"clp": 0.186, "dsc": 0.51}, "B": {"clp": 0.505, "spt": 0.209}}, num_classes=205)
  markdown = table4.to_markdown()
  assert "| A | 18.6 | - | - | **51.0** |" in markdown
  assert "| B | **50.5** | **20.9** | - | - |" in markdown  # the only value is the best
  assert "Chance level: 0.49 (accuracy = 1/205)." in markdown
  table5 = tables.zero_shot_retrieval_table(
      {"C": dict.fromkeys(rows_lib.ZERO_SHOT_PAIRS, 0.089)}, chance=0.083)
  assert len(table5.column_keys) == 13 and table5.column_keys[-1] == "mean"
  assert "| C | " + " | ".join(["8.9"] * 13) + " |" in table5.to_markdown()


def test_chance_precision_is_the_mean_share_of_relevant_targets():
  # Targets: label 0 twice, 1 once, 2 once. Queries 0, 1, 3 see shares 1/2, 1/4, 0.
  assert rows_lib.chance_precision([0, 1, 3], [0, 0, 1, 2]) == pytest.approx(
      (0.5 + 0.25 + 0) / 3)


def test_chance_map_is_a_random_rankings_expected_ap_per_query():
  ap = retrieval.random_ranking_ap
  # 4 targets: query 0 has 2 relevant, query 1 one (E[1/rank] = H_4 / 4), query 3 none.
  assert rows_lib.chance_map([0, 1, 3], [0, 0, 1, 2]) == pytest.approx(
      (ap(2, 4) + (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4 + 0) / 3)
  labels = {"nat": np.array([0, 1]), "clp": np.array([0, 0, 1, 1]), "spt": np.array([1, 1, 2])}
  pairs = [("nat", "clp"), ("nat", "spt"), ("clp", "nat"), ("clp", "spt"), ("spt", "nat"),
           ("spt", "clp")]
  expected = np.mean([rows_lib.chance_map(labels[q], labels[t]) for q, t in pairs])
  assert rows_lib.mean_chance_map(labels, pairs) == pytest.approx(expected)
  # The default data's validation sets: 30 categories x 10 examples.
  labels = np.repeat(np.arange(30), 10)
  assert rows_lib.chance_map(labels, labels) == pytest.approx(0.05041, abs=1e-5)
  assert rows_lib.chance_precision(labels, labels) == pytest.approx(1 / 30)


def test_metric_by_pair():
  scores = {("nat", "clp"): {"map": 0.2, "p@10": 0.3, "num_queries": 5}}
  assert rows_lib.metric_by_pair(scores, "p@10") == {("nat", "clp"): 0.3}
  with pytest.raises(ValueError, match="scores: no metric 'p@5'"):
    rows_lib.metric_by_pair(scores, "p@5")


@pytest.mark.parametrize("call, message", [
    (lambda: tables.retrieval_table({"A": {("nat", "clp"): 17.9}}, chance=0.01),
     r"results\['A'\]\[\('nat', 'clp'\)\]: 17.9 is not a fraction"),
    (lambda: tables.retrieval_table({"A": {("nat", "nat"): 0.1}}, chance=0.01),
     r"results\['A'\]: columns \[\('nat', 'nat'\)\] are not in"),
    (lambda: tables.retrieval_table({}, chance=0.01), "results: expected a non-empty dict"),
    (lambda: tables.retrieval_table({"A": {}}, chance=None), "chance: every table needs"),
    (lambda: tables.layer_table({"A": {"fc7": float("nan")}}, chance=0.01), "not a fraction"),
    (lambda: tables.zero_shot_classification_table({"A": {}}, num_classes=0), "num_classes"),
    (lambda: rows_lib.chance_map([], [0]), "query_labels: expected a non-empty"),
    (lambda: rows_lib.mean_chance_map({"nat": [0]}, [("nat", "dsc")]),
     r"labels: no labels for modalities \['dsc'\]"),
])
def test_bad_input_raises_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
