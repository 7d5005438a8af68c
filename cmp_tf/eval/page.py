"""A run's evaluation page, eval/index.html beside tables.md: the paper's Figure 5 on this
run, the query -> target mAP matrices per layer as heatmaps, and dev accuracy while training.

Written by `evaluation.evaluate_run` from what it has just computed (the validation features,
results.json's numbers, run.json's dev histories); the PNGs lie beside the page.
"""

import os

import numpy as np

from cmp_tf import html_page
from cmp_tf import modalities as mod_lib
from cmp_tf.eval import plots, retrieval_figure
from cmp_tf.layer_names import FEATURE_LAYERS

PAGE_NAME = html_page.INDEX_NAME
RETRIEVALS_PNG = "figure5.png"
MATRICES_PNG = "map_matrices.png"
DEV_PNG = "dev_accuracy.png"


def matrices(results, modalities):
  """{layer: [M, M] mAP in percent} of every evaluated layer (results.json's scores)."""
  by_layer = results["details"].get("retrieval", {})
  return {layer: plots.pair_matrix(by_layer[layer], modalities)
          for layer in FEATURE_LAYERS if layer in by_layer}


def _retrievals_section(shown, modalities):
  queries = ", ".join(f"{m.upper()} {shown['queries'][m]}" for m in modalities
                      if m in shown["queries"])
  body = [html_page.paragraph(
              "A validation query in each modality (red frame) and its top "
              f"{retrieval_figure.TOP_K} results in every other modality; a green frame marks "
              "a result of the query's category. The queries are drawn with seed "
              f"{shown['seed']} from the dataset's validation ids, so every run on this "
              f"dataset shows the same ones: {queries}."),
          html_page.figure(RETRIEVALS_PNG, "Figure 5 on this run")]
  return html_page.Section("Retrievals across modalities (Figure 5)", "\n".join(body),
                           (RETRIEVALS_PNG,))


def _matrices_section(eval_dir, results, modalities):
  by_layer = matrices(results, modalities)
  if not by_layer:
    return None
  chance = results["chance"].get("table1")
  titled = {}
  for layer, matrix in by_layer.items():
    titled[f"{layer}: mean {np.nanmean(matrix):.1f}"] = matrix
  plots.plot_pair_matrices(titled, modalities, os.path.join(eval_dir, MATRICES_PNG),
                           chance=chance)
  fc7 = by_layer.get("fc7")
  names = [m.upper() for m in modalities]
  body = [html_page.paragraph(
      "mAP (%) of each query modality (rows) retrieving each target modality (columns) on "
      "the validation split, per layer; the diagonal (same modality) is not part of the "
      "tables. Chance (a random ranking's expected mAP): "
      + (f"{100 * chance:.2f}." if chance is not None else "not defined here.")),
      html_page.figure(MATRICES_PNG, "query -> target mAP per layer")]
  if fc7 is not None:
    rows = [[names[i]] + [None if i == j else round(float(fc7[i, j]), 1)
                          for j in range(len(names))] for i in range(len(names))]
    body.append(html_page.table(["fc7: query \\ target"] + names, rows))
  return html_page.Section("Query -> target mAP (Tables 1 and 3)", "\n".join(body),
                           (MATRICES_PNG,))


def _dev_section(eval_dir, state):
  stages = state.get("stages", [])
  if not plots.plot_dev_curves(stages, os.path.join(eval_dir, DEV_PNG)):
    return None
  rows = [[s.get("name"), s.get("steps"), s.get("best_step"), s.get("stop_reason")]
          for s in stages if s.get("dev_history")]
  body = [html_page.paragraph(
      "Accuracy of each modality on the dev split (carved from training, never the "
      "validation split) at every evaluation of a stage; the dashed line is their mean, by "
      "which the stage keeps its best weights (dotted line)."),
      html_page.figure(DEV_PNG, "dev accuracy over steps"),
      html_page.table(["stage", "steps", "best step", "stopped by"], rows)]
  return html_page.Section("Dev accuracy while training", "\n".join(body), (DEV_PNG,))


def write_run_page(eval_dir, results, state, val_sets, data_dir, manifest):
  """Writes eval_dir/index.html and its PNGs; returns the page's path."""
  modalities = [m for m in mod_lib.ALL_MODALITIES if m in val_sets]
  shown = retrieval_figure.write(os.path.join(eval_dir, RETRIEVALS_PNG), val_sets, data_dir,
                                 manifest)
  sections = [_retrievals_section(shown, modalities),
              _matrices_section(eval_dir, results, modalities),
              _dev_section(eval_dir, state)]
  sections = [s for s in sections if s is not None]
  name = results.get("method_name") or results.get("method")
  preamble = [f"Run: {name}{' (zero-shot)' if results.get('zero_shot') else ''}, "
              f"{results.get('run_dir')}",
              "The numbers of every table: tables.md and results.json beside this page."]
  return html_page.write_page(eval_dir, f"Evaluation of {name}", preamble, sections,
                               name=PAGE_NAME)
