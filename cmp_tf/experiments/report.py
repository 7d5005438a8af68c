"""The reproduction report: every evaluated row merged into the paper's Tables 1-5.

Pure assembly of results.json files written by `cmp_tf.evaluate`: Tables 1-3 take the
rows of the normal runs (and the source network's and BL-Individual's subspace
alignment), Tables 4-5 those of the zero-shot runs. The paper's own numbers appear
only in PAPER_*, typed from the paper, and only beside ours for comparison.
"""

import numpy as np

from cmp_tf.eval import rows as rows_lib
from cmp_tf.eval import tables
from cmp_tf.layer_names import FEATURE_LAYERS

# The paper's rows in its order; rows of other names follow them.
ROW_ORDER = (
    "BL-PlacesNet", "BL-Individual", "BL-Shared-Upper-Scratch", "BL-Shared-Upper",
    "Subsp. Align. + PlacesNet", "Subsp. Align. + PlacesNet Finetune", "A: Tune",
    "A: Tune (Free)", "B: StatReg (Gaussian)", "B: StatReg (GMM)", "C: Tune + StatReg (GMM)",
)
BASELINE_ROW = "BL-Individual"
BEST_ROW = "C: Tune + StatReg (GMM)"

# The paper's numbers (CMPlaces, percent), for comparison only: Table 1's "Mean mAP" column
# and Table 3 (pool5, fc6, fc7). Chance in the paper: 0.73 mAP.
PAPER_CHANCE_MAP = 0.73
PAPER_TABLE1_MEAN_MAP = {
    "BL-Individual": 6.1, "BL-Shared-Upper-Scratch": 5.4, "BL-Shared-Upper": 6.5,
    "Subsp. Align. + PlacesNet Finetune": 6.4, "A: Tune": 8.5, "A: Tune (Free)": 9.3,
    "B: StatReg (Gaussian)": 6.1, "B: StatReg (GMM)": 6.4, "C: Tune + StatReg (GMM)": 11.9,
}
PAPER_TABLE3 = {
    "BL-Individual": {"pool5": 2.0, "fc6": 4.0, "fc7": 6.1},
    "BL-Shared-Upper-Scratch": {"pool5": 1.5, "fc6": 3.8, "fc7": 5.4},
    "BL-Shared-Upper": {"pool5": 1.6, "fc6": 3.2, "fc7": 6.5},
    "A: Tune": {"pool5": 4.2, "fc6": 8.4, "fc7": 8.5},
    "A: Tune (Free)": {"pool5": 4.1, "fc6": 8.4, "fc7": 9.3},
    "B: StatReg (Gaussian)": {"pool5": 2.0, "fc6": 4.2, "fc7": 6.1},
    "B: StatReg (GMM)": {"pool5": 2.0, "fc6": 5.5, "fc7": 6.4},
    "C: Tune + StatReg (GMM)": {"pool5": 3.4, "fc6": 11.1, "fc7": 11.9},
}
# Table 1's DSC-query columns (DSC->NAT, CLP, SPT, LDR) of the two rows compared below.
PAPER_DSC_QUERY_MAP = {"BL-Individual": (0.9, 1.4, 1.5, 1.2),
                       "C: Tune + StatReg (GMM)": (19.5, 15.8, 21.4, 8.0)}
NORMAL_TABLES = ("table1", "table2", "table3")
ZERO_SHOT_TABLES = (rows_lib.TABLE4_CONVENTIONAL, "table4", "table5")
DSC_QUERY_PAIRS = tuple(p for p in rows_lib.RETRIEVAL_PAIRS if p[0] == "dsc")


def _ordered(by_name):
  names = [n for n in ROW_ORDER if n in by_name] + [n for n in by_name if n not in ROW_ORDER]
  return {n: by_name[n] for n in names}


def _collect_rows(normal_results, zero_shot_results):
  """{table id: {row: [its values in each result that has it]}}: several for a row trained
  at several seeds."""
  collected = {}
  for results_list, wanted in ((normal_results, NORMAL_TABLES),
                               (zero_shot_results, ZERO_SHOT_TABLES)):
    for results in results_list:
      for table, by_name in tables.rows_from_json(results["rows"]).items():
        if table in wanted:
          for name, row in by_name.items():
            collected.setdefault(table, {}).setdefault(name, []).append(row)
  return collected


def _mean_row(rows):
  columns = list(dict.fromkeys(c for row in rows for c in row))
  return {c: (None if any(row.get(c) is None for row in rows)
              else float(np.mean([row[c] for row in rows]))) for c in columns}


def merge_rows(normal_results, zero_shot_results):
  """{table id: {row: {column: value}}} of Tables 1-3 from `normal_results` and 4-5 from
  `zero_shot_results` (lists of results.json dicts), rows in the paper's order; a row
  with several results (seeds) is their mean."""
  collected = _collect_rows(normal_results, zero_shot_results)
  return {table: _ordered({n: _mean_row(rows) for n, rows in by_name.items()})
          for table, by_name in collected.items()}


def seed_rows(normal_results, zero_shot_results):
  """{table id: {row: [values per seed]}} of the rows with several results (seeds)."""
  collected = _collect_rows(normal_results, zero_shot_results)
  return {table: {n: rows for n, rows in by_name.items() if len(rows) > 1}
          for table, by_name in collected.items()
          if any(len(rows) > 1 for rows in by_name.values())}


def renamed(results, row):
  """`results` (a run's results.json dict) with its one row per table named `row`."""
  out = dict(results)
  out["rows"] = {}
  for table, by_name in results["rows"].items():
    if len(by_name) != 1:
      raise ValueError(f"{table}: cannot rename {sorted(by_name)} to one row {row!r}")
    out["rows"][table] = {row: next(iter(by_name.values()))}
  return out


def merge_chance(normal_results, zero_shot_results):
  """Chance levels of Tables 1-3 from a run with all five modalities (else any), 4-5 likewise."""
  chance = {}
  for results_list, wanted in ((normal_results, NORMAL_TABLES),
                               (zero_shot_results, ZERO_SHOT_TABLES)):
    ranked = sorted(results_list, key=lambda r: r.get("kind") != "run")
    for table in wanted:
      for results in ranked:
        if table in results.get("chance", {}):
          chance[table] = results["chance"][table]
          break
  return chance


def check_same_data(results_list):
  """The manifest fingerprint every result shares; an error names the odd one out."""
  fingerprints = {}
  for results in results_list:
    fingerprints.setdefault(results.get("manifest_fingerprint"), []).append(
        results.get("run_dir") or results.get("source_dir"))
  if len(fingerprints) > 1:
    details = "; ".join(f"{fp}: {', '.join(map(str, dirs))}" for fp, dirs in fingerprints.items())
    raise ValueError(f"the evaluations were made on different datasets ({details})")
  return next(iter(fingerprints), None)


def _fmt(value, digits=1):
  return "-" if value is None else f"{value:.{digits}f}"


def _mean_of(row, columns):
  values = [row.get(c) for c in columns]
  return None if any(v is None for v in values) else float(np.mean(values))


def _with_spread(mean, per_seed):
  """"m" or "m ± sd (k seeds)" in percent, from fractions."""
  if mean is None:
    return "-"
  values = [v for v in per_seed or () if v is not None]
  if len(values) < 2:
    return _fmt(100 * mean)
  return f"{100 * mean:.1f} ± {100 * np.std(values, ddof=1):.1f} ({len(values)} seeds)"


def comparison_markdown(rows, seeds=None):
  """Our Table 1 mean mAP and Table 3 beside the paper's (percent); `seeds` (seed_rows)
  adds the standard deviation over seeds where a row has several."""
  seeds = seeds or {}
  table1 = rows.get("table1", {})
  table3 = rows.get("table3", {})
  names = [n for n in _ordered({**table1, **table3}) if n in PAPER_TABLE1_MEAN_MAP
           or n in PAPER_TABLE3 or n in table1]
  lines = ["**Ours beside the paper (mAP, percent; the paper's numbers are on CMPlaces)**", "",
           "| Method | Table 1 mean: ours | paper | pool5: ours | paper | fc6: ours | paper | "
           "fc7: ours | paper |",
           "|---|" + "---:|" * 8]
  for name in names:
    mean = _mean_of(table1.get(name, {}), rows_lib.RETRIEVAL_PAIRS)
    per_seed = [_mean_of(r, rows_lib.RETRIEVAL_PAIRS)
                for r in seeds.get("table1", {}).get(name, [])]
    cells = [_with_spread(mean, per_seed), _fmt(PAPER_TABLE1_MEAN_MAP.get(name))]
    for layer in FEATURE_LAYERS:
      ours = table3.get(name, {}).get(layer)
      per_seed = [r.get(layer) for r in seeds.get("table3", {}).get(name, [])]
      cells += [_with_spread(ours, per_seed), _fmt(PAPER_TABLE3.get(name, {}).get(layer))]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += ["", f"Chance level in the paper: {PAPER_CHANCE_MAP:.2f} mAP."]
  return "\n".join(lines) + "\n"


def ratios(rows, seeds=None):
  """C over BL-Individual: Table 1 mean mAP and the mean mAP of DSC queries, ours and the
  paper's, with each row's per-seed means where it has several (`seeds`: seed_rows). None
  where a row or a value is missing."""
  table1 = rows.get("table1", {})
  per_seed = (seeds or {}).get("table1", {})
  best, base = table1.get(BEST_ROW), table1.get(BASELINE_ROW)

  def ratio(columns):
    if best is None or base is None:
      return None
    a, b = _mean_of(best, columns), _mean_of(base, columns)
    return None if a is None or not b else a / b

  def spread(columns):
    return {name: [_mean_of(r, columns) for r in per_seed[name]]
            for name in (BEST_ROW, BASELINE_ROW) if name in per_seed}

  paper_dsc = {n: float(np.mean(v)) for n, v in PAPER_DSC_QUERY_MAP.items()}
  return {
      "mean_map": {"ours": ratio(rows_lib.RETRIEVAL_PAIRS),
                   "paper": PAPER_TABLE1_MEAN_MAP[BEST_ROW] / PAPER_TABLE1_MEAN_MAP[BASELINE_ROW],
                   "per_seed": spread(rows_lib.RETRIEVAL_PAIRS)},
      "dsc_query_map": {"ours": ratio(DSC_QUERY_PAIRS),
                        "paper": paper_dsc[BEST_ROW] / paper_dsc[BASELINE_ROW],
                        "per_seed": spread(DSC_QUERY_PAIRS)},
  }


def ratios_markdown(values):
  lines = [f"**{BEST_ROW} over {BASELINE_ROW} (Table 1)**", "",
           "| Ratio | ours | paper |", "|---|---:|---:|"]
  labels = {"mean_map": "mean mAP of the 20 pairs",
            "dsc_query_map": "mean mAP of DSC queries (DSC→NAT, CLP, SPT, LDR)"}
  notes = []
  for key, label in labels.items():
    lines.append(f"| {label} | {_fmt(values[key]['ours'], 2)} | "
                 f"{_fmt(values[key]['paper'], 2)} |")
    for name, means in values[key].get("per_seed", {}).items():
      shown = [v for v in means if v is not None]
      if len(shown) > 1:
        notes.append(f"{label}, {name}: {100 * np.mean(shown):.1f} ± "
                     f"{100 * np.std(shown, ddof=1):.1f} over {len(shown)} seeds "
                     f"({', '.join(f'{100 * v:.1f}' for v in shown)})")
  if notes:
    lines += ["", "Per seed (mean ± standard deviation): " + "; ".join(notes) + "."]
  return "\n".join(lines) + "\n"


def _stages_cell(training):
  return " + ".join(
      f"{st['steps']} ({st.get('stop_reason') or 'fixed'}"
      + (f", best {st['best_step']}" if st.get("best_step") else "") + ")"
      for st in training) or "-"


def run_table1_mean(results, row):
  """Table 1 mean mAP of `row` in one results dict (JSON rows, as results.json holds), or
  None."""
  table1 = tables.rows_from_json(results.get("rows", {})).get("table1", {})
  return _mean_of(table1.get(row, {}), rows_lib.RETRIEVAL_PAIRS)


def protocol_markdown(entries, rows):
  """Per run: steps per stage and why each stopped, the last stage's best dev accuracy,
  Table 1's mean mAP (normal runs) and the upper layers' drift from the source network."""
  table1 = rows.get("table1", {})
  lines = ["**Training under the protocol, drift beside Table 1**", "",
           "| Row | Setting | Learning rate, regularisers | Steps per stage (stop, best step) | "
           "Dev accuracy | Table 1 mean mAP | drift fc6 | drift fc7 | drift classifier | "
           "Training s |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
  for e in entries:
    training = e.get("training")
    if not training:
      continue
    last = training[-1]
    drift = last["drift"].get("from_source") or last["drift"].get("from_stage_start") or {}
    mean = None
    if e.get("setting") == "normal":  # the run's own mean; the row's where it has none
      mean = e.get("table1_mean")
      if mean is None:
        mean = _mean_of(table1.get(e.get("table_row", e["row"]), {}), rows_lib.RETRIEVAL_PAIRS)
    pct = lambda v: _fmt(None if v is None else 100 * v)  # noqa: E731
    lines.append(
        f"| {e['row']} | {e['setting']} | {e.get('settings', '-')} | {_stages_cell(training)} | "
        f"{_fmt(last.get('dev_mean'), 3)} | {pct(mean)} | {pct(drift.get('fc6'))} | "
        f"{pct(drift.get('fc7'))} | {pct(drift.get('classifier'))} | "
        f"{_fmt(e.get('train_s'), 0)} |")
  lines += ["", "Learning rate, regularisers: what the run's recipe trained with (the "
            "learning-rate rule's rate, configs/base.flags; each prior's and alignment term's "
            "weight from the grid, docs/reproduction/grid.md). Dev accuracy: mean over the "
            "stage's modalities on the dev split (carved out "
            "of training; model selection reads it, never the validation split the tables "
            "report). Drift: ||W - W0|| / ||W0|| of the final weights against the source "
            "network (percent; against the stage's start for a run from scratch), averaged "
            "over the modality copies of a layer where the upper is not shared."]
  return "\n".join(lines) + "\n"


def wall_time_markdown(entries):
  """`entries`: [{"row", "setting", "train_s", "reused_s", "evaluate_s", "train",
  "evaluate"}]."""
  lines = ["**Wall time of every row (seconds)**", "",
           "| Row | Setting | Training | Evaluation | Training status | Evaluation status |",
           "|---|---|---:|---:|---|---|"]
  for e in entries:
    train = _fmt(e.get("train_s"), 0)
    if e.get("reused_s"):
      train += f" ({_fmt(e['reused_s'], 0)} in stages taken from another run)"
    lines.append(f"| {e['row']} | {e['setting']} | {train} | "
                 f"{_fmt(e.get('evaluate_s'), 1)} | {e.get('train', '-')} | "
                 f"{e.get('evaluate', '-')} |")
  lines += ["", "Training: what training the row whole costs; a stage another run had trained "
            "exactly as this one would was taken from it (its time there counted)."]
  return "\n".join(lines) + "\n"


# The paper's human study (section 5.4): how often units that clearly fired on a concept in
# NAT were also picked in every other modality, method A vs the best fine-tuning baseline.
PAPER_ALIGNED_SHARE = {"A: Tune": 33, "BL-Individual": 25}


def analysis_row(name, invariance, alignment, top_objects=3):
  """One method's modality-probe accuracies and aligned-unit fractions (from the JSON
  written by `cmp_tf.analyze`; either may be None)."""
  row = {"row": name, "probe": {}, "probe_chance": None, "aligned": {},
         "aligned_chance": {}, "aligned_within": {}, "objects": {}}
  if invariance:
    row["probe"] = {layer: p["accuracy"] for layer, p in invariance["probe"].items()}
    row["probe_chance"] = next(iter(invariance["probe"].values()))["chance"]
  if alignment:
    for layer, entry in alignment["layers"].items():
      row["aligned"][layer] = entry["fraction"]
      row["aligned_chance"][layer] = entry["chance_fraction"]
      if "within_category" in entry:
        row["aligned_within"][layer] = entry["within_category"]["fraction"]
      row["objects"][layer] = list(entry["detected_objects"])[:top_objects]
  return row


def analysis_markdown(rows):
  """Methods compared by modality invariance and unit alignment (percent)."""
  rows = list(_ordered({r["row"]: r for r in rows}).values())
  probe_layers = list(dict.fromkeys(k for r in rows for k in r["probe"]))
  align_layers = list(dict.fromkeys(k for r in rows for k in r["aligned"]))
  within_layers = list(dict.fromkeys(k for r in rows for k in r.get("aligned_within", {})))
  pct = lambda v: _fmt(None if v is None else 100 * v)  # noqa: E731
  header = (["Method"] + [f"probe {k}" for k in probe_layers]
            + [f"aligned {k}" for k in align_layers]
            + [f"within categories {k}" for k in within_layers]
            + [f"objects ({align_layers[-1]})" if align_layers else "objects"])
  lines = ["**Modality invariance and unit alignment (percent)**", "",
           "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
  for r in rows:
    last = r["objects"].get(align_layers[-1], []) if align_layers else []
    cells = ([pct(r["probe"].get(k)) for k in probe_layers]
             + [pct(r["aligned"].get(k)) for k in align_layers]
             + [pct(r.get("aligned_within", {}).get(k)) for k in within_layers]
             + [", ".join(last) or "-"])
    lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
  chance = next((r["probe_chance"] for r in rows if r["probe_chance"] is not None), None)
  aligned_chance = {k: max(r["aligned_chance"].get(k) or 0.0 for r in rows)
                    for k in align_layers}
  lines += ["", "Probe: cross-validated accuracy of a linear probe predicting the modality "
            f"from the layer (lower = more modality-invariant; chance {pct(chance)}). "
            "Aligned: units whose best-detected ground-truth object (ROC AUC >= 0.75) is the "
            "same in NAT and in at least two other modalities; with the objects shuffled "
            "among examples at most " + ", ".join(f"{pct(v)} ({k})"
                                                  for k, v in aligned_chance.items())
            + ". Within categories: the same rule with AUCs over pairs of examples of one "
            "scene category (objects that merely come with a category do not count). "
            "Objects: those most often detected by aligned units.",
            "The paper's human study (not the same measure): units aligned across "
            "modalities " + " vs ".join(f"{v}% for {n}" for n, v in PAPER_ALIGNED_SHARE.items())
            + "."]
  return "\n".join(lines) + "\n"


def diagnostic_row(name, diagnostic):
  """One method's alignment diagnostic (`cmp_tf.eval.diagnostics.alignment_diagnostic`)."""
  return {"row": name, "modalities": diagnostic}


# A modality whose within-modality mAP is at most this many times a random ranking's has
# features that separate no categories: its network collapsed (a "dead branch"), and every
# pair it takes part in sits at chance whatever the alignment.
DEAD_BRANCH_FACTOR = 2.0


def dead_branches(rows):
  """[(row, modality, within, its chance)] of every modality whose within-modality mAP is at
  most `DEAD_BRANCH_FACTOR` times its chance."""
  return [(r["row"], m, d["within"], d["within_chance"])
          for r in rows for m, d in r["modalities"].items()
          if d.get("within") is not None and d.get("within_chance")
          and d["within"] <= DEAD_BRANCH_FACTOR * d["within_chance"]]


def diagnostic_markdown(rows, layer="fc7"):
  """Per method and modality: within-modality mAP and how much of it the other modalities
  reach when they retrieve it (percent)."""
  rows = list(_ordered({r["row"]: r for r in rows}).values())
  modalities = list(dict.fromkeys(m for r in rows for m in r["modalities"]))
  header = ["Method"] + [f"{m.upper()}: within / others→it" for m in modalities]
  lines = [f"**Alignment diagnostic ({layer} mAP, percent)**", "",
           "| " + " | ".join(header) + " |", "|---|" + "---:|" * len(modalities)]
  for r in rows:
    cells = []
    for m in modalities:
      d = r["modalities"].get(m)
      if d is None:
        cells.append("-")
        continue
      within, others = (None if d[k] is None else 100 * d[k] for k in ("within", "as_target"))
      cells.append(f"{_fmt(within)} / {_fmt(others)}")
    lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
  lines += ["", "| Method | " + " | ".join(f"{m.upper()}: queries / within" for m in modalities)
            + " |", "|---|" + "---:|" * len(modalities)]
  for r in rows:
    cells = [f"{_ratio(d.get('premise'))} ({_ratio(d.get('premise_above_chance'))})"
             for d in (r["modalities"].get(m, {}) for m in modalities)]
    lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
  lines += ["", "Within: each validation example retrieving the rest of its own modality "
            "(leave-one-out), the most that alignment alone can give the pairs that retrieve "
            "that modality. Others→it: the mean mAP of the four cross-modal pairs that "
            "retrieve it (Table 1). When others→it is close to within, the modalities are "
            "already as aligned as their features allow, and a method can only win by "
            "better features, not by better alignment. Queries / within: the mean mAP of the "
            "modality's four pairs as the query over its within-modality mAP; the paper's "
            "premise is a small value for DSC under BL-Individual (its description queries "
            "sit near chance on CMPlaces). In brackets, the same above chance: (queries - their "
            "chance) / (within - its chance), the chances a random ranking's expected mAP of "
            "the same queries and targets; 0 is no more than chance."]
  chances = sorted({round(100 * d["within_chance"], 2) for r in rows
                    for d in r["modalities"].values() if d.get("within_chance") is not None})
  if chances:
    lines[-1] += (" Chance within: " + " to ".join(f"{c:.2f}" for c in chances[::max(
        1, len(chances) - 1)]) + " (the expected leave-one-out AP of a random ranking).")
  dead = dead_branches(rows)
  if dead:
    lines += ["", f"**Dead branches** (within-modality mAP at most {DEAD_BRANCH_FACTOR:g}x "
              "its chance: the modality's features separate no categories, and every pair it "
              "takes part in sits at chance, which pulls its row's means down): " + "; ".join(
                  f"{row}, {m.upper()} (within {100 * w:.1f}, chance {100 * c:.2f})"
                  for row, m, w, c in dead) + "."]
  return "\n".join(lines) + "\n"


def _ratio(value):
  return "-" if value is None else f"{value:.2f}"
