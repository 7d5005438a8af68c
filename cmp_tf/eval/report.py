"""Rows of Tables 1-5 as JSON and as the paper's Markdown tables.

Rows are {table id: {row name: {column: fraction or None}}} with the columns of
`cmp_tf.eval.rows`. In JSON a (query, target) column is written "nat->clp"
(`tables.pair_key`); `rows_from_json` turns it back, so rows saved by one
evaluation can be merged with others' into one table (`cmp_tf.reproduce`).
"""


from cmp_tf.eval import rows as rows_lib
from cmp_tf.eval import tables

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
  return tables.pair_key(column) if isinstance(column, tuple) else str(column)


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


def build_tables(rows, chance, *, num_classes=None):
  """The Table objects of every table id that has rows, in paper order.

  Args:
    rows: {table id: {row name: {column: fraction or None}}}.
    chance: {table id: chance fraction}; every table with rows needs one.
    num_classes: the number of scene categories (Table 4's chance is 1 / num_classes).
  """
  built = []
  for table in rows_lib.TABLE_IDS:
    by_name = rows.get(table)
    if not by_name:
      continue
    if table == "table4":
      if not num_classes:
        raise ValueError("table4: num_classes is needed for its chance level")
      built.append(tables.zero_shot_classification_table(by_name, num_classes=num_classes,
                                                         title=TITLES[table]))
      continue
    if table == rows_lib.TABLE4_CONVENTIONAL:
      if table not in chance:
        raise ValueError(f"{table}: no chance level (1 / number of held-out categories)")
      built.append(tables.zero_shot_classification_table(
          by_name, num_classes=round(1 / chance[table]), title=TITLES[table]))
      continue
    if table not in chance:
      raise ValueError(f"{table}: no chance level")
    if table == "table1":
      built.append(tables.retrieval_table(by_name, chance=chance[table], metric="mAP",
                                          title=TITLES[table]))
    elif table == "table2":
      built.append(tables.retrieval_table(by_name, chance=chance[table], metric="PR@10",
                                          title=TITLES[table]))
    elif table == "table3":
      present = {c for row in by_name.values() for c in row}
      layers = [layer for layer in tables.LAYERS if layer in present]
      layers += sorted(present - set(layers))
      built.append(tables.layer_table(by_name, chance=chance[table], layers=layers,
                                      title=TITLES[table]))
    else:
      built.append(tables.zero_shot_retrieval_table(by_name, chance=chance[table],
                                                    title=TITLES[table]))
  return built


def tables_markdown(title, preamble, built):
  """A Markdown document: `title`, the `preamble` lines, then every table."""
  parts = [f"# {title}", ""]
  if preamble:
    parts += list(preamble) + [""]
  for table in built:
    parts.append(table.to_markdown())
  return "\n".join(parts)
