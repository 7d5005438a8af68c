"""The paper's Tables 1-5 as Markdown and JSON: rows are methods, values shown as percentages.

Rows (`cmp_tf.eval.rows`) are {table id: {row name: {column: fraction or None}}}. In
JSON a (query, target) column is written "nat->clp" (`rows.pair_key`); `rows_from_json`
turns it back, so rows saved by one evaluation can be merged with others' into one table
(`cmp_tf.experiments`). `build_tables` makes the Table of every table id that has rows.

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

from cmp_tf.eval import rows as rows_lib
from cmp_tf.eval import zero_shot
from cmp_tf.layer_names import FEATURE_LAYERS
from cmp_tf.modalities import ALL_MODALITIES

MEAN = "mean"
# How each metric's chance level is defined (printed under its table and kept in its JSON).
CHANCE_NOTES = {
    "mAP": "mAP = the expected AP of a random ranking, exact, per query, averaged as the "
           "table averages",
    "PR@10": "PR@10 = mean share of relevant targets",
}


def _header(column):
  if isinstance(column, tuple):
    return f"{column[0].upper()}→{column[1].upper()}"
  return column.upper() if column in ALL_MODALITIES else column


def _key(column):
  return rows_lib.pair_key(column) if isinstance(column, tuple) else column


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
  # {method: {column_key: standard deviation over seeds}} of rows trained at several seeds
  # (their `values` are the seeds' means), and {method: number of seeds}.
  spread: dict = dataclasses.field(default_factory=dict)
  seeds: dict = dataclasses.field(default_factory=dict)

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
        if value is not None and _percent(value) == best[key]:
          text = f"**{text}**"
        sd = self.spread.get(method, {}).get(key)
        cells.append(text if sd is None else f"{text} ± {_percent(sd)}")
      label = method + (f" ({self.seeds[method]} seeds)" if method in self.seeds else "")
      lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Chance level: {100 * self.chance:.2f} ({self.chance_note})."]
    if self.seeds:
      lines.append("A row trained at several seeds shows their mean ± standard deviation.")
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
        "spread": {m: dict(v) for m, v in self.spread.items()},
        "seeds": dict(self.seeds),
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


def retrieval_table(results, *, chance, metric="mAP", pairs=rows_lib.RETRIEVAL_PAIRS, title=None):
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
                chance_note=CHANCE_NOTES.get(metric, metric),
                mean_header=f"Mean {metric}", note="Columns are query→target modality pairs.")


def layer_table(results, *, chance, layers=FEATURE_LAYERS, title=None):
  """Table 3: mean cross-modal retrieval mAP over all pairs, per layer."""
  return _build(title or "Mean cross-modal retrieval mAP across layers", results,
                tuple(layers), chance=chance,
                chance_note=CHANCE_NOTES["mAP"])


def zero_shot_classification_table(results, *, num_classes,
                                   modalities=zero_shot.ZERO_SHOT_MODALITIES, title=None):
  """Table 4: accuracy on the held-out categories per modality; chance is 1 / num_classes."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
      num_classes < 1):
    raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
  return _build(title or "Zero-shot scene classification accuracy", results, tuple(modalities),
                chance=1.0 / num_classes, chance_note=f"accuracy = 1/{num_classes}")


def zero_shot_retrieval_table(results, *, chance, pairs=rows_lib.ZERO_SHOT_PAIRS, title=None):
  """Table 5: retrieval mAP on the held-out categories, 12 pairs and their mean."""
  return retrieval_table(results, chance=chance, metric="mAP", pairs=pairs,
                         title=title or "Zero-shot scene retrieval mAP")


# --- Rows as JSON, and every table of a run or a reproduction ------------------------------

TITLES = {
    "table1": "Table 1: Cross-modal retrieval mAP (fc7)",
    "table2": "Table 2: Cross-modal retrieval PR@10 (fc7)",
    "table3": "Table 3: Mean cross-modal retrieval mAP across layers",
    rows_lib.TABLE4_CONVENTIONAL: "Table 4 (conventional protocol: argmax over the held-out "
                                  "categories only): Zero-shot scene classification accuracy",
    "table4": "Table 4 (generalized protocol: argmax over all categories): Zero-shot scene "
              "classification accuracy",
    "table5": "Table 5: Zero-shot scene retrieval mAP (held-out categories)",
}
_PAIR_SEPARATOR = "->"


def column_key(column):
  """The JSON key of a column: "nat->clp" for a pair, the name itself otherwise."""
  return rows_lib.pair_key(column) if isinstance(column, tuple) else str(column)


def column_from_key(key):
  """Inverse of `column_key`."""
  if _PAIR_SEPARATOR in key:
    query, target = key.split(_PAIR_SEPARATOR)
    return (query, target)
  return key


def rows_to_json(rows):
  return {table: {name: {column_key(c): v for c, v in row.items()}
                  for name, row in by_name.items()}
          for table, by_name in rows.items()}


def rows_from_json(obj):
  return {table: {name: {column_from_key(k): v for k, v in row.items()}
                  for name, row in by_name.items()}
          for table, by_name in obj.items()}


def scores_to_json(scores):
  """{(query, target): metrics} -> {"query->target": metrics}."""
  return {column_key(pair): value for pair, value in scores.items()}


def add_row(rows, table, name, row):
  """Adds `row` under `name` in `rows[table]`; a name may appear once per table."""
  by_name = rows.setdefault(table, {})
  if name in by_name:
    raise ValueError(f"{table}: two rows named {name!r}")
  by_name[name] = dict(row)


def build_tables(rows, chance, *, num_classes=None, seed_rows=None):
  """The Table objects of every table id that has rows, in paper order.

  Args:
    rows: {table id: {row name: {column: fraction or None}}}.
    chance: {table id: chance fraction}; every table with rows needs one.
    num_classes: the number of scene categories (Table 4's chance is 1 / num_classes).
    seed_rows: {table id: {row name: [row per seed]}} of the rows trained at several seeds
      (their entry in `rows` is the mean): each table gets their standard deviations.
  """
  built = []
  for table in rows_lib.TABLE_IDS:
    by_name = rows.get(table)
    if not by_name:
      continue
    made = _build_table(table, by_name, chance, num_classes)
    per_seed = (seed_rows or {}).get(table, {})
    if per_seed:
      spread, seeds = {}, {}
      for name, seed_values in per_seed.items():
        values = [_build_table(table, {name: r}, chance, num_classes).values[name]
                  for r in seed_values]
        spread[name] = {k: (None if any(v.get(k) is None for v in values)
                            else float(np.std([v[k] for v in values], ddof=1)))
                        for k in made.column_keys}
        seeds[name] = len(seed_values)
      made = dataclasses.replace(made, spread=spread, seeds=seeds)
    built.append(made)
  return built


def _build_table(table, by_name, chance, num_classes):
  if table == "table4":
    if not num_classes:
      raise ValueError("table4: num_classes is needed for its chance level")
    return zero_shot_classification_table(by_name, num_classes=num_classes,
                                          title=TITLES[table])
  if table == rows_lib.TABLE4_CONVENTIONAL:
    if table not in chance:
      raise ValueError(f"{table}: no chance level (1 / number of held-out categories)")
    return zero_shot_classification_table(by_name, num_classes=round(1 / chance[table]),
                                          title=TITLES[table])
  if table not in chance:
    raise ValueError(f"{table}: no chance level")
  if table == "table1":
    return retrieval_table(by_name, chance=chance[table], metric="mAP", title=TITLES[table])
  if table == "table2":
    return retrieval_table(by_name, chance=chance[table], metric="PR@10", title=TITLES[table])
  if table == "table3":
    present = {c for row in by_name.values() for c in row}
    layers = [layer for layer in FEATURE_LAYERS if layer in present]
    layers += sorted(present - set(layers))
    return layer_table(by_name, chance=chance[table], layers=layers, title=TITLES[table])
  return zero_shot_retrieval_table(by_name, chance=chance[table], title=TITLES[table])


def tables_markdown(title, preamble, built):
  """A Markdown document: `title`, the `preamble` lines, then every table."""
  parts = [f"# {title}", ""]
  if preamble:
    parts += list(preamble) + [""]
  for table in built:
    parts.append(table.to_markdown())
  return "\n".join(parts)
