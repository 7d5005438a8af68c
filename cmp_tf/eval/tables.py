"""The paper's Tables 1-5 as Markdown and JSON: rows are methods, values shown as percentages.

Inputs are fractions in [0, 1] as the metrics return them: {method: {column: value}}, where a
column is a (query, target) modality pair (Tables 1, 2, 5), a layer name (Table 3) or a
modality (Table 4). A value that is missing (or None) shows as "-", and so does a row's mean
unless every pair is present. In each column the best value (after rounding to one decimal,
so equal-looking values are bold alike) is bold when the table has at least two methods. Every
table carries its chance level, printed on a line under it.
"""

import dataclasses
import decimal
import math

import numpy as np

from cmp_tf.eval import retrieval, zero_shot
from cmp_tf.modalities import ALL_MODALITIES

RETRIEVAL_PAIRS = tuple(retrieval.default_pairs(ALL_MODALITIES))  # Tables 1 and 2: 20 pairs
ZERO_SHOT_PAIRS = tuple(zero_shot.zero_shot_pairs())  # Table 5: 12 pairs
LAYERS = ("pool5", "fc6", "fc7")  # Table 3
MEAN = "mean"


def pair_key(pair):
  """The JSON key of a (query, target) pair: "nat->clp"."""
  return f"{pair[0]}->{pair[1]}"


def _header(column):
  if isinstance(column, tuple):
    return f"{column[0].upper()}→{column[1].upper()}"
  return column.upper() if column in ALL_MODALITIES else column


def _key(column):
  return pair_key(column) if isinstance(column, tuple) else column


@dataclasses.dataclass(frozen=True)
class Table:
  """One table: `values[method][column_key]` is a fraction in [0, 1] or None (missing)."""

  title: str
  column_keys: tuple
  headers: tuple
  values: dict
  chance: float
  chance_note: str
  note: str = ""

  def to_markdown(self):
    lines = [f"**{self.title}**", "",
             "| Method | " + " | ".join(self.headers) + " |",
             "|---|" + "---:|" * len(self.headers)]
    best = {key: self._best(key) for key in self.column_keys}
    for method, row in self.values.items():
      cells = []
      for key in self.column_keys:
        value = row.get(key)
        text = "-" if value is None else _percent(value)
        cells.append(f"**{text}**" if value is not None and _percent(value) == best[key] else text)
      lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", f"Chance level: {100 * self.chance:.2f} ({self.chance_note})."]
    if self.note:
      lines.append(self.note)
    return "\n".join(lines) + "\n"

  def _best(self, key):
    present = [row[key] for row in self.values.values() if row.get(key) is not None]
    if len(self.values) < 2 or not present:
      return None
    return _percent(max(present))

  def to_dict(self):
    """A JSON-able form: values stay fractions in [0, 1]; missing ones are null."""
    return {
        "title": self.title,
        "columns": [{"key": k, "header": h} for k, h in zip(self.column_keys, self.headers)],
        "rows": [{"method": m, "values": {k: row.get(k) for k in self.column_keys}}
                 for m, row in self.values.items()],
        "chance": self.chance,
        "chance_note": self.chance_note,
        "units": "fraction",
    }


def _percent(value):
  """A fraction as a percentage with one decimal, halves rounded up (0.1505 -> "15.1")."""
  percent = decimal.Decimal(repr(round(100 * value, 9)))
  return str(percent.quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP))


def _check_fraction(value, where):
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{where}: expected a number, got {value!r}")
  value = float(value)
  if not math.isfinite(value) or not 0.0 <= value <= 1.0:
    raise ValueError(f"{where}: {value} is not a fraction in [0, 1] (pass metrics, not "
                     "percentages)")
  return value


def _build(title, results, columns, *, chance, chance_note, mean_header=None, note=""):
  if not isinstance(results, dict) or not results:
    raise ValueError(f"results: expected a non-empty dict {{method: {{column: value}}}} for "
                     f"{title!r}")
  chance = _check_fraction(chance, "chance")
  if chance is None:
    raise ValueError(f"chance: every table needs its chance level ({title!r})")
  values = {}
  for method, row in results.items():
    unknown = [c for c in row if c not in columns]
    if unknown:
      raise ValueError(f"results[{method!r}]: columns {unknown} are not in {title!r} "
                       f"(expected some of {[_key(c) for c in columns]})")
    checked = {_key(c): _check_fraction(row.get(c), f"results[{method!r}][{c!r}]")
               for c in columns}
    if mean_header:
      present = [v for v in checked.values() if v is not None]
      checked[MEAN] = float(np.mean(present)) if len(present) == len(columns) else None
    values[str(method)] = checked
  keys = tuple(_key(c) for c in columns) + ((MEAN,) if mean_header else ())
  headers = tuple(_header(c) for c in columns) + ((mean_header,) if mean_header else ())
  return Table(title, keys, headers, values, chance, chance_note, note)


def retrieval_table(results, *, chance, metric="mAP", pairs=RETRIEVAL_PAIRS, title=None):
  """Tables 1 (metric="mAP") and 2 (metric="PR@10"): the query->target pairs and their mean.

  Args:
    results: {method: {(query, target): fraction}}.
    chance: the chance level of the metric, e.g. `mean_chance_map(labels, pairs)`.
    metric: the metric's name in the title and the mean column.
    pairs: the columns, grouped by query (default: all 20 of the five modalities).
    title: the table's title.
  """
  pairs = tuple(tuple(p) for p in pairs)
  return _build(title or f"Cross-modal retrieval {metric}", results, pairs, chance=chance,
                chance_note=f"{metric} = mean fraction of relevant targets",
                mean_header=f"Mean {metric}", note="Columns are query→target modality pairs.")


def layer_table(results, *, chance, layers=LAYERS, title=None):
  """Table 3: mean cross-modal retrieval mAP over all pairs, per layer."""
  return _build(title or "Mean cross-modal retrieval mAP across layers", results,
                tuple(layers), chance=chance,
                chance_note="mAP = mean fraction of relevant targets")


def zero_shot_classification_table(results, *, num_classes,
                                   modalities=zero_shot.ZERO_SHOT_MODALITIES, title=None):
  """Table 4: accuracy on the held-out categories per modality; chance is 1 / num_classes."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
      num_classes < 1):
    raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
  return _build(title or "Zero-shot scene classification accuracy", results, tuple(modalities),
                chance=1.0 / num_classes, chance_note=f"accuracy = 1/{num_classes}")


def zero_shot_retrieval_table(results, *, chance, pairs=ZERO_SHOT_PAIRS, title=None):
  """Table 5: retrieval mAP on the held-out categories, 12 pairs and their mean."""
  return retrieval_table(results, chance=chance, metric="mAP", pairs=pairs,
                         title=title or "Zero-shot scene retrieval mAP")


def chance_map(query_labels, target_labels):
  """Chance mAP of one pair: the mean, over queries, of the fraction of relevant targets."""
  query_labels = np.asarray(query_labels)
  target_labels = np.asarray(target_labels)
  if query_labels.ndim != 1 or query_labels.size == 0:
    raise ValueError(f"query_labels: expected a non-empty 1-D array, got {query_labels.shape}")
  if target_labels.ndim != 1 or target_labels.size == 0:
    raise ValueError(f"target_labels: expected a non-empty 1-D array, got {target_labels.shape}")
  values, counts = np.unique(target_labels, return_counts=True)
  fraction = dict(zip(values.tolist(), (counts / target_labels.size).tolist()))
  return float(np.mean([fraction.get(label, 0.0) for label in query_labels.tolist()]))


def mean_chance_map(labels, pairs):
  """Chance mAP averaged over (query, target) pairs; `labels` is {modality: [N]}."""
  pairs = [tuple(p) for p in pairs]
  if not pairs:
    raise ValueError("pairs: no (query, target) pair")
  missing = sorted({m for p in pairs for m in p if m not in labels})
  if missing:
    raise ValueError(f"labels: no labels for modalities {missing}")
  return float(np.mean([chance_map(labels[q], labels[t]) for q, t in pairs]))


def metric_by_pair(scores, metric="map"):
  """{(query, target): fraction} of one metric from `cross_modal_retrieval`'s output."""
  try:
    return {pair: float(s[metric]) for pair, s in scores.items()}
  except KeyError as e:
    raise ValueError(f"scores: no metric {metric!r} (have {sorted(next(iter(scores.values())))})"
                     ) from e
