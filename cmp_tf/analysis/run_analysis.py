"""Analyses what a trained run's shared representation learned (paper sections 5.3-5.5).

`analyze_run` (`python -m cmp_tf.analyze`) runs some of these parts, each computed from the run's final weights on the validation splits:
  invariance  t-SNE of fc7 coloured by modality and by category, and the accuracy of a
              linear probe predicting the modality from pool5/fc6/fc7 (Figure 7)
  alignment   the share of units that detect the same ground-truth object in NAT and
              in two other modalities (an objective version of the paper's human study)
  units       top-5 activating examples of some units per modality, DSC words (Figs 2, 6)
  inversion   images reconstructed from pool5 of every modality (Figure 8)

Output in --out: invariance.json, alignment.json, units/, inversion/, the pictures, and
index.html showing everything on one page. The JSON files name the weights they were
computed from (`weights_digest`), so a later reader can tell whether they are current.
Every part is also a library function of the modules of `cmp_tf.analysis`.
"""

import json
import os
import time

from cmp_tf import fileio, finished_run
from cmp_tf.fileio import write_json_atomic

PARTS = ("invariance", "alignment", "units", "inversion")
ANALYSIS_DIR = "analysis"
INVARIANCE_JSON = "invariance.json"
ALIGNMENT_JSON = "alignment.json"
DEFAULT_MAX_PER_MODALITY = 1000
FORMAT_VERSION = 1


def check_parts(parts):
  """The requested parts in canonical order; unknown ones -> ValueError naming --parts."""
  if isinstance(parts, str):
    parts = [p for p in parts.split(",") if p.strip()]
  parts = [str(p).strip().lower() for p in parts]
  unknown = [p for p in parts if p not in PARTS]
  if not parts or unknown:
    raise ValueError(f"--parts: expected some of {', '.join(PARTS)}, got "
                     f"{', '.join(unknown) if unknown else 'none'}")
  return tuple(p for p in PARTS if p in parts)


def _check_options(options, parts):
  """{part: kwargs} for parts that are run; anything else -> ValueError."""
  options = dict(options or {})
  unknown = [p for p in options if p not in parts]
  if unknown:
    raise ValueError(f"options: for parts {', '.join(map(str, unknown))}, which are not run "
                     f"(running {', '.join(parts)})")
  for part, kwargs in options.items():
    if not isinstance(kwargs, dict):
      raise ValueError(f"options[{part!r}]: expected a dict of keyword arguments, got "
                       f"{type(kwargs).__name__}")
  return options


def _check_max(max_per_modality):
  if max_per_modality is not None and (isinstance(max_per_modality, bool)
                                       or int(max_per_modality) != max_per_modality
                                       or max_per_modality < 5):
    raise ValueError(f"--max_per_modality: expected an integer >= 5, got {max_per_modality!r}")


def settings_of(max_per_modality, seed, options=None):
  """What a part's results depend on besides the weights (compared by `current_result`),
  as it reads back from JSON."""
  return json.loads(json.dumps({"max_per_modality": max_per_modality, "seed": int(seed),
                                "options": dict(options or {})}))


def _provenance(run, settings):
  return {"format_version": FORMAT_VERSION, "run_dir": run.run_dir,
          "method": run.state.get("method"), "method_name": run.name,
          "share_upper": bool(run.spec.share_upper), "weights_digest": run.weights_digest,
          "settings": settings}


def current_result(path, weights_digest, settings=None):
  """The JSON at `path` when it was computed from these weights (and settings), else None."""
  if not os.path.isfile(path):
    return None
  try:
    saved = fileio.read_json(path)
  except (OSError, ValueError):
    return None
  if saved.get("format_version") != FORMAT_VERSION or saved.get("weights_digest") != (
      weights_digest):
    return None
  if settings is not None and saved.get("settings") != settings:
    return None
  return saved


def analyze_run(run_dir, *, out_dir=None, max_per_modality=DEFAULT_MAX_PER_MODALITY,
                parts=PARTS, seed=0, data_dir=None, options=None, progress=True):
  """Runs the analysis parts of a finished run and writes them with index.html.

  Args:
    run_dir: a run directory of cmp_tf.train whose run.json says "complete".
    out_dir: where to write (default `run_dir`/analysis).
    max_per_modality: at most this many validation examples per modality (random subset
      drawn with `seed`); None: all.
    parts: some of PARTS.
    seed: the subsets', t-SNE's, the probe folds' and the unit choice's seed.
    data_dir: the dataset; default: the one run.json names.
    options: {part: {keyword: value}} passed on to a part's function, e.g.
      {"inversion": {"steps": 50}} (see `cmp_tf.analysis`'s modules).
    progress: print a line per step.

  Returns:
    {"out_dir", "index", "parts": {part: result dict}, "wall_time_s": {part: s, "total"}}.
  """
  from cmp_tf.analysis import activations as activations_lib

  started = time.perf_counter()
  parts = check_parts(parts)
  options = _check_options(options, parts)
  _check_max(max_per_modality)
  run = finished_run.load_run(run_dir, data_dir=data_dir)
  out_dir = os.path.abspath(os.fspath(out_dir or os.path.join(run.run_dir, ANALYSIS_DIR)))
  os.makedirs(out_dir, exist_ok=True)
  settings = settings_of(max_per_modality, seed)
  times, results = {}, {}

  def say(message):
    if progress:
      print(message, flush=True)

  step = time.perf_counter()
  keep_inputs = "units" in parts or "inversion" in parts  # they draw the examples
  acts = activations_lib.run_activations(run, max_examples=max_per_modality, seed=seed,
                                         keep_inputs=keep_inputs, progress=progress)
  times["activations"] = round(time.perf_counter() - step, 2)
  for part in parts:
    step = time.perf_counter()
    results[part] = _PART_RUNNERS[part](run, acts, out_dir, settings, seed, progress,
                                        **options.get(part, {}))
    times[part] = round(time.perf_counter() - step, 2)
    say(f"{part}: {times[part]:.1f} s")
  index = write_page(run, out_dir, results, settings,
                     earlier=saved_results(out_dir, run.weights_digest))
  times["total"] = round(time.perf_counter() - started, 2)
  say(f"analysis written to {out_dir} ({times['total']:.1f} s); open {index}")
  return {"out_dir": out_dir, "index": index, "parts": results, "wall_time_s": times}


COMPARED_PARTS = ("invariance", "alignment")


def ensure_analysis(run_dir, *, parts=COMPARED_PARTS,
                    max_per_modality=DEFAULT_MAX_PER_MODALITY, seed=0, progress=False):
  """({part: result}, "kept" | "analysed") of the parts that compare methods (invariance,
  alignment) for a finished run: RUN/analysis/<part>.json is reused when it was computed
  from the run's current weights with these settings; the other parts are run."""
  parts = check_parts(parts)
  other = [p for p in parts if p not in COMPARED_PARTS]
  if other:
    raise ValueError(f"ensure_analysis: only {', '.join(COMPARED_PARTS)} are kept by their "
                     f"weights, not {', '.join(other)}")
  finished_run.check_finished(run_dir)
  digest = finished_run.weights_digest(run_dir)
  settings = settings_of(max_per_modality, seed)
  names = {"invariance": INVARIANCE_JSON, "alignment": ALIGNMENT_JSON}
  kept = {p: current_result(os.path.join(run_dir, ANALYSIS_DIR, names[p]), digest, settings)
          for p in parts}
  missing = [p for p, result in kept.items() if result is None]
  if not missing:
    return kept, "kept"
  done = analyze_run(run_dir, max_per_modality=max_per_modality, parts=missing, seed=seed,
                     progress=progress)
  return {p: kept[p] or done["parts"][p] for p in parts}, "analysed"


def _invariance(run, acts, out_dir, settings, seed, progress, **kwargs):
  from cmp_tf.analysis import invariance
  result = invariance.run_invariance(acts, out_dir, categories=run.categories, seed=seed,
                                     title=run.name, **kwargs)
  result = {**result, **_provenance(run, settings_of(settings["max_per_modality"], seed, kwargs))}
  write_json_atomic(os.path.join(out_dir, INVARIANCE_JSON), result)
  return result


def _alignment(run, acts, out_dir, settings, seed, progress, **kwargs):
  from cmp_tf.analysis import alignment
  result = {**alignment.run_alignment(acts, seed=seed, **kwargs),
            **_provenance(run, settings_of(settings["max_per_modality"], seed, kwargs))}
  write_json_atomic(os.path.join(out_dir, ALIGNMENT_JSON), result)
  return result


def _units(run, acts, out_dir, settings, seed, progress, **kwargs):
  from cmp_tf.analysis import units
  return units.write_unit_visualisations(run, out_dir, activations=acts, seed=seed,
                                         **kwargs)


def _inversion(run, acts, out_dir, settings, seed, progress, **kwargs):
  from cmp_tf.analysis import inversion
  return inversion.write_inversions(run, out_dir, activations=acts, seed=seed, progress=progress,
                                    **kwargs)


_PART_RUNNERS = {"invariance": _invariance, "alignment": _alignment, "units": _units,
                 "inversion": _inversion}


def _json_paths():
  from cmp_tf.analysis import inversion, units
  return {"invariance": INVARIANCE_JSON, "alignment": ALIGNMENT_JSON,
          "units": f"{units.UNITS_DIR}/{units.UNITS_JSON}",
          "inversion": f"{inversion.INVERSION_DIR}/{inversion.INVERSION_JSON}"}


def saved_results(out_dir, weights_digest):
  """{part: result} of the parts already in `out_dir` computed from these weights."""
  found = {}
  for part, name in _json_paths().items():
    path = os.path.join(out_dir, name)
    try:
      saved = fileio.read_json(path) if os.path.isfile(path) else None
    except (OSError, ValueError):
      saved = None
    if saved and saved.get("weights_digest") == weights_digest:
      found[part] = saved
  return found


def write_page(run, out_dir, results, settings, earlier=None):
  """index.html of the parts' `results` and of `earlier` ones (from an earlier analysis of
  the same weights, left out when a picture of theirs is gone), in the order of PARTS."""
  from cmp_tf import html_page
  from cmp_tf.analysis import html
  makers = {"invariance": html.invariance_section, "alignment": html.alignment_section,
            "units": html.units_section, "inversion": html.inversion_section}
  sections = []
  for part in PARTS:
    if part in results:
      sections.append(makers[part](results[part]))
    elif part in (earlier or {}):
      try:
        section = makers[part](earlier[part])
      except (KeyError, TypeError):  # written by another version
        continue
      if all(os.path.isfile(os.path.join(out_dir, src)) for src in section.images):
        sections.append(section)
  limit = ("all" if settings["max_per_modality"] is None
           else f"at most {settings['max_per_modality']}")
  preamble = [f"Run: {run.run_dir} ({'shared' if run.spec.share_upper else 'per-modality'} "
              f"fc6/fc7; weights {run.weights_digest}).",
              f"Data: {run.data_dir}; validation examples: {limit} per modality "
              f"(seed {settings['seed']})."]
  return html_page.write_page(out_dir, f"Analysis of {run.name}", preamble, sections)
