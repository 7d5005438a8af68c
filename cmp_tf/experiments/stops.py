"""Where every stage stopped, under the convergence rule it trained with and under the earlier
rule replayed on the same dev curve, and how much the stop step varies over seeds.

The earlier rule (before configs/base.flags' current one): every 100 steps the mean dev
accuracy over the modalities; an evaluation improves when it is at least 0.005 above the best
so far; the stage stops after 4 evaluations without improvement, or at the cap. Replayed on a
stage's recorded history it gives the step it would have stopped at, when the history reaches
that far (the current rule stopped later); the replay of a later stage is exact only when the
earlier stages' replayed best steps equal the current ones (the same weights carried over),
and is marked approximate otherwise.
"""

import statistics

EARLIER_MIN_DELTA = 0.005
EARLIER_PATIENCE = 4


def earlier_rule_stop(history, max_steps, *, min_delta=EARLIER_MIN_DELTA,
                      patience=EARLIER_PATIENCE):
  """(stop step, best step, best mean) of the earlier rule on a stage's dev `history`, or
  None when the history ends before that rule would have stopped."""
  best, since = None, 0
  for entry in history:
    if best is None or entry["mean"] >= best["mean"] + min_delta:
      best, since = entry, 0
    else:
      since += 1
    if since >= patience or entry["step"] >= max_steps:
      return entry["step"], best["step"], best["mean"]
  return None


def stage_rows(run, row, seed, state):
  """One row per stage of a finished run's run.json `state` that trained under the
  convergence rule: its stop and best steps and best mean dev accuracy, then the earlier
  rule's on the same curve."""
  out, exact = [], True
  for index, stage in enumerate(state.get("stages", [])):
    history = stage.get("dev_history")
    if not history:
      continue
    best_mean = max(e["mean"] for e in history if e["step"] == stage.get("best_step"))
    earlier = earlier_rule_stop(history, stage.get("max_steps", history[-1]["step"]))
    out.append({"run": run, "row": row, "seed": seed, "stage": index,
                "name": stage.get("name"), "steps": stage.get("steps"),
                "best_step": stage.get("best_step"), "stop_reason": stage.get("stop_reason"),
                "dev_mean": best_mean,
                "earlier_steps": earlier[0] if earlier else None,
                "earlier_best_step": earlier[1] if earlier else None,
                "earlier_dev_mean": earlier[2] if earlier else None,
                "earlier_exact": exact})
    exact = exact and earlier is not None and earlier[1] == stage.get("best_step")
  return out


def _spread(values):
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return f"{values[0]}"
  return (f"{statistics.mean(values):.0f} ± {statistics.stdev(values):.0f} "
          f"({min(values)}-{max(values)})")


def stops_markdown(rows):
  """Per run and stage the stop under both rules; per row and stage with several seeds, the
  mean ± standard deviation (range) of the stop step under each."""
  if not rows:
    return ""
  lines = ["**Where every stage stopped: the convergence rule, and the earlier rule replayed "
           "on the same dev curve**", "",
           "| Run | Stage | Steps (why) | Best step | Best mean dev acc. | Earlier rule: steps "
           "| best step | best mean |", "|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    mark = "" if r["earlier_exact"] else " ≈"
    earlier = (["beyond the history", "-", "-"] if r["earlier_steps"] is None
               else [f"{r['earlier_steps']}{mark}", f"{r['earlier_best_step']}{mark}",
                     f"{100 * r['earlier_dev_mean']:.1f}{mark}"])
    lines.append(f"| {r['run']} | {r['stage']} ({r['name']}) | {r['steps']} "
                 f"({r['stop_reason']}) | {r['best_step']} | {100 * r['dev_mean']:.1f} | "
                 + " | ".join(earlier) + " |")
  groups = {}
  for r in rows:
    groups.setdefault((r["row"], r["stage"], r["name"]), []).append(r)
  several = {k: v for k, v in groups.items() if len({r["seed"] for r in v}) > 1}
  if several:
    lines += ["", "**The stop step over seeds** (mean ± standard deviation (range))", "",
              "| Row | Stage | Seeds | Convergence rule | Earlier rule (replayed) | "
              "Best mean dev acc. |", "|---|---|---:|---:|---:|---:|"]
    for (row, stage, name), group in several.items():
      dev = [100 * r["dev_mean"] for r in group]
      dev_text = (f"{statistics.mean(dev):.1f} ± {statistics.stdev(dev):.1f}"
                  if len(dev) > 1 else f"{dev[0]:.1f}")
      lines.append(f"| {row} | {stage} ({name}) | {len(group)} | "
                   f"{_spread([r['steps'] for r in group])} | "
                   f"{_spread([r['earlier_steps'] for r in group])} | {dev_text} |")
  lines += ["", "The earlier rule: mean dev accuracy up by 0.005 within 4 evaluations of 100 "
            "steps, else stop (cap as now). \"≈\": a later stage whose earlier stages the "
            "earlier rule would have ended at another best step, so it would have started "
            "from other weights; \"beyond the history\": the current rule stopped first."]
  return "\n".join(lines) + "\n"
