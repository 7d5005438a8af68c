"""The reproduction's page, report.html beside report.md: Table 1's mean per method against the
paper's, Table 3 as lines, BL-Individual's and C's query -> target matrices and their
difference, Figure 5 for both on the same queries, and Table 4 in both protocols.

Every number comes from the merged rows report.md is made of (`report.merge_rows`,
`report.seed_rows`); error bars are the standard deviation over seeds where a row has
several.
"""

import os

import numpy as np

from cmp_tf import fileio, html_page
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.eval import embeddings, evaluation, plots, retrieval_figure
from cmp_tf.eval import rows as rows_lib
from cmp_tf.experiments import report
from cmp_tf.layer_names import FC7, FEATURE_LAYERS

PAGE_NAME = "report.html"
MAIN_FIGURE_ID = "main-figure"  # the figure README shows
TABLE1_PNG = "report_table1.png"
TABLE3_PNG = "report_table3.png"
MATRICES_PNG = "report_matrices.png"
TABLE4_PNG = "report_table4.png"
COMPARED = (report.BASELINE_ROW, report.BEST_ROW)


def mean_and_spread(rows, seeds, table, columns):
  """{row name: (mean over `columns` in percent, standard deviation over seeds or None)}."""
  out = {}
  for name, row in rows.get(table, {}).items():
    values = [row.get(c) for c in columns]
    if any(v is None for v in values):
      continue
    per_seed = [np.mean([r[c] for c in columns]) for r in seeds.get(table, {}).get(name, [])]
    std = 100 * float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    out[name] = (100 * float(np.mean(values)), std)
  return out


def _table1_section(out_dir, rows, seeds, chance):
  means = mean_and_spread(rows, seeds, "table1", rows_lib.RETRIEVAL_PAIRS)
  if not means:
    return None
  plots.plot_bars({name: {"ours": value} for name, value in means.items()},
                  os.path.join(out_dir, TABLE1_PNG), ylabel="mean mAP over 20 pairs (%)",
                  title="Table 1: cross-modal retrieval, fc7",
                  reference=report.PAPER_TABLE1_MEAN_MAP,
                  chance=100 * chance["table1"] if chance.get("table1") else None)
  body = [html_page.paragraph(
              "Mean mAP of the 20 query -> target modality pairs per method (ours: this "
              "reproduction; error bars: standard deviation over seeds where a row has "
              "several), the paper's value on CMPlaces beside it (its chance: "
              f"{report.PAPER_CHANCE_MAP:.2f}; ours: the red line)."),
          f'<div id="{MAIN_FIGURE_ID}">' + html_page.figure(TABLE1_PNG, "Table 1 mean") + "</div>",
          html_page.table(["method", "ours", "std over seeds", "paper"],
                          [[n, round(m, 1), None if s is None else round(s, 1),
                            report.PAPER_TABLE1_MEAN_MAP.get(n)]
                           for n, (m, s) in means.items()])]
  return html_page.Section("Table 1: mean mAP per method", "\n".join(body), (TABLE1_PNG,))


def _table3_section(out_dir, rows, seeds):
  lines = {}
  for name, row in rows.get("table3", {}).items():
    if all(row.get(layer) is not None for layer in FEATURE_LAYERS):
      per_seed = seeds.get("table3", {}).get(name, [])
      lines[name] = [(100 * row[layer], 100 * float(np.std([r[layer] for r in per_seed],
                                                           ddof=1))
                      if len(per_seed) > 1 else None) for layer in FEATURE_LAYERS]
  if not lines:
    return None
  plots.plot_lines(lines, list(FEATURE_LAYERS), os.path.join(out_dir, TABLE3_PNG),
                   ylabel="mean mAP over 20 pairs (%)", title="Table 3: alignment per layer")
  body = [html_page.paragraph("Mean mAP at pool5, fc6 and fc7 per method: how alignment grows "
                              "towards the top of the network."),
          html_page.figure(TABLE3_PNG, "Table 3 as lines")]
  return html_page.Section("Table 3: pool5 -> fc6 -> fc7", "\n".join(body), (TABLE3_PNG,))


def _row_matrix(row):
  return plots.pair_matrix({rows_lib.pair_key(p): {"map": v} for p, v in row.items()
                            if isinstance(p, tuple) and v is not None},
                           list(mod_lib.ALL_MODALITIES))


def _matrices_section(out_dir, rows):
  table1 = rows.get("table1", {})
  if not all(name in table1 for name in COMPARED):
    return None
  base, best = (_row_matrix(table1[name]) for name in COMPARED)
  plots.plot_pair_matrices({COMPARED[0]: base, COMPARED[1]: best}, mod_lib.ALL_MODALITIES,
                           os.path.join(out_dir, MATRICES_PNG))
  diff_png = "report_matrices_difference.png"
  plots.plot_pair_matrices({f"{COMPARED[1]} minus {COMPARED[0]}": best - base},
                           mod_lib.ALL_MODALITIES, os.path.join(out_dir, diff_png),
                           difference=True)
  body = [html_page.paragraph("Table 1 as matrices (fc7 mAP, %; rows: query modality, "
                              "columns: target), the two methods on one colour scale, then "
                              "their difference."),
          html_page.figure(MATRICES_PNG, "query -> target mAP"),
          html_page.figure(diff_png, "difference")]
  return html_page.Section(f"{COMPARED[0]} and {COMPARED[1]}, pair by pair", "\n".join(body),
                           (MATRICES_PNG, diff_png))


def _figure5_section(out_dir, entries):
  """Figure 5 of the first normal run of each compared row, on the same queries."""
  shown, images = [], []
  for name in COMPARED:
    entry = next((e for e in entries if e.get("table_row") == name
                  and e.get("setting") == "normal" and e.get("run_dir")), None)
    if entry is None:
      continue
    features_dir = os.path.join(entry["run_dir"], evaluation.EVAL_DIR, evaluation.FEATURES_DIR)
    results_path = os.path.join(entry["run_dir"], evaluation.EVAL_DIR, evaluation.RESULTS_JSON)
    if not os.path.isfile(results_path):
      continue
    data_dir = fileio.read_json(results_path)["data_dir"]
    manifest = manifest_lib.read_manifest(data_dir, check_files=False)
    sets = embeddings.load_sets(features_dir, [m for m in mod_lib.ALL_MODALITIES
                                               if m in manifest["modalities"]], (FC7,))
    png = f"report_figure5_{entry['run']}.png"
    retrieval_figure.write(os.path.join(out_dir, png), sets, data_dir, manifest)
    shown.append(html_page.figure(png, f"{name} ({entry['run']})"))
    images.append(png)
  if not images:
    return None
  body = [html_page.paragraph("The paper's Figure 5 for both methods on the same validation "
                              "queries (one per modality, red frame) and their top 2 results in "
                              "every other modality; green: the query's category.")] + shown
  return html_page.Section("Retrievals across modalities (Figure 5)", "\n".join(body),
                           tuple(images))


def _table4_section(out_dir, rows, seeds):
  protocols = {"conventional": rows_lib.TABLE4_CONVENTIONAL, "generalized": "table4"}
  groups = {}
  for label, table in protocols.items():
    for name, row in rows.get(table, {}).items():
      columns = [c for c in row if row[c] is not None]
      if columns:
        mean, std = mean_and_spread(rows, seeds, table, columns).get(name, (None, None))
        if mean is not None:
          groups.setdefault(name, {})[label] = (mean, std)
  if not groups:
    return None
  plots.plot_bars(groups, os.path.join(out_dir, TABLE4_PNG),
                  ylabel="accuracy on held-out categories (%)",
                  title="Table 4: zero-shot classification, mean over modalities")
  body = [html_page.paragraph("Zero-shot accuracy on the held-out categories, mean over the "
                              "modalities of the table, under both protocols: conventional "
                              "(argmax over the held-out categories) and generalized (over "
                              "all categories)."),
          html_page.figure(TABLE4_PNG, "Table 4, both protocols")]
  return html_page.Section("Table 4: zero-shot, both protocols", "\n".join(body), (TABLE4_PNG,))


def write_reproduction_page(out_dir, rows, seeds, chance, entries):
  """Writes out_dir/report.html and its PNGs; returns the page's path."""
  sections = [_table1_section(out_dir, rows, seeds, chance),
              _table3_section(out_dir, rows, seeds),
              _matrices_section(out_dir, rows),
              _figure5_section(out_dir, entries),
              _table4_section(out_dir, rows, seeds)]
  sections = [s for s in sections if s is not None]
  preamble = [f"Reproduction in {out_dir}. Every number: report.md and results.json beside "
              "this page; each run's own page: runs/<run>/eval/index.html."]
  return html_page.write_page(out_dir, "Cross-Modal Scene Networks: reproduction", preamble,
                               sections, name=PAGE_NAME)
