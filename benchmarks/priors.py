"""Cost of the activation priors: a stage's training step with its priors vs without.

  python -m benchmarks.priors [--size=default] [--stages=c/free_statreg,...]

Each listed stage (method/stage) is built with the trainer's own step
(cmp_tf.training.trainer.build_train_step): with its priors (K=100 GMMs, or full-
covariance Gaussians, on pool5, fc6 and fc7 of every branch), without them, and, for
GMM priors, with the earlier MixtureSameFamily.log_prob path in place of the matmul
form (`activation_prior.mixture_nll_and_grad`); all are timed in interleaved rounds.
Target: GMM priors cost at most 1.05x the step without them.
"""

import contextlib
import dataclasses
import sys

from absl import app, flags

from benchmarks import common, harness

FLAGS = flags.FLAGS
DEFAULT_STAGES = ("c/free_statreg", "b_gmm/statreg",
                  "b_gaussian/statreg")
TARGET_RATIO = 1.05
OLD = "mixture log_prob"


@contextlib.contextmanager
def mixture_path():
  """Steps traced inside use MixtureSameFamily.log_prob for their GMM priors."""
  from cmp_tf.priors import activation_prior, params

  compiled = activation_prior._COMPILED  # the layer looks its function up when traced
  kept = compiled[params.GMM]
  compiled[params.GMM] = activation_prior.mixture_nll_and_grad
  try:
    yield
  finally:
    compiled[params.GMM] = kept


def define_flags():
  flags.DEFINE_enum("size", "default", list(harness.SIZES), "Model size (benchmarks.harness).")
  flags.DEFINE_integer("batch_size", 0, "Examples per modality; 0: the size's.")
  flags.DEFINE_list("stages", list(DEFAULT_STAGES), "method/stage names with priors.")
  flags.DEFINE_integer("steps", 5, "Steps per timed round.")
  flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
  flags.DEFINE_integer("gmm_components", 0, "K of the GMM priors; 0: the size's (100).")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/priors.json.")


def _find_stage(full_name):
  method, _, stage_name = full_name.partition("/")
  try:
    found = dict(harness.method_stages(method))
  except ValueError as e:
    raise ValueError(f"--stages: {e}") from None
  if stage_name not in found or not found[stage_name].priors:
    with_priors = [f"{method}/{n}" for n, s in found.items() if s.priors]
    raise ValueError(f"--stages: {full_name!r} is not a stage with priors "
                     f"({', '.join(with_priors) or f'{method} has none'})")
  return found[stage_name]


def run_benchmark(*, size, stage_names, steps, rounds, log=print):
  """Returns {"stages": {name: {...}}, ...}: step times with and without priors, ratios."""
  from cmp_tf.training import strategy as strategy_lib

  stages = {name: _find_stage(name) for name in stage_names}
  strategy = strategy_lib.make_strategy("mirrored")
  functions, built = {}, {}
  for name, stage in stages.items():
    gmm = any(u.kind == "gmm" for u in stage.priors)
    for label, with_priors, old in ((f"{name} with priors", True, False),
                                    (f"{name} with priors ({OLD})", True, True),
                                    (f"{name} without priors", False, False)):
      if old and not gmm:
        continue
      with mixture_path() if old else contextlib.nullcontext():
        step = harness.build_stage_step(label, stage, size, strategy, priors=with_priors)
        step.run()  # traces the step
        step.run()
      built[label] = step
      functions[label] = harness.run_steps(step, steps)
      log(f"built {label}", flush=True)
  timings = common.interleaved(functions, rounds, per=steps)
  out = {}
  for name, stage in stages.items():
    with_t = timings[f"{name} with priors"].summary(1e3)
    without_t = timings[f"{name} without priors"].summary(1e3)
    out[name] = {
        "priors": [dataclasses.asdict(u) for u in stage.priors],
        "ms_with": with_t, "ms_without": without_t,
        "ratio_best": with_t["best"] / without_t["best"],
        "ratio_median": with_t["median"] / without_t["median"],
        "ratio_cpu": with_t["cpu_best"] / without_t["cpu_best"]}
    if f"{name} with priors ({OLD})" in timings:
      old_t = timings[f"{name} with priors ({OLD})"].summary(1e3)
      out[name].update(ms_old=old_t, old_ratio_best=old_t["best"] / without_t["best"],
                       old_ratio_median=old_t["median"] / without_t["median"],
                       old_ratio_cpu=old_t["cpu_best"] / without_t["cpu_best"])
  return {"size": dataclasses.asdict(size), "steps_per_round": steps, "stages": out,
          "target_ratio": TARGET_RATIO, "load_average": common.load_average()}


def format_results(r):
  size = r["size"]
  lines = [f"{size['variant']} at {size['image_size']} px, batch {size['batch_size']} per "
           f"modality, GMM K={size['gmm_components']} (load {r['load_average']})",
           f"{'stage':36s} {'ms with':>8s} {'ms without':>10s} {'ratio':>6s} {'median':>7s} "
           f"{'CPU':>6s}   earlier path: {'ms':>6s} {'ratio':>6s} {'median':>7s} {'CPU':>6s}"]
  for name, s in r["stages"].items():
    kinds = {p["kind"] for p in s["priors"]}
    target = (f"  (target <= {r['target_ratio']:g}x: "
              f"{'met' if s['ratio_best'] <= r['target_ratio'] else 'MISSED'})"
              if kinds == {"gmm"} else "")
    lines.append(f"{name:36s} {s['ms_with']['best']:8.1f} {s['ms_without']['best']:10.1f} "
                 f"{s['ratio_best']:5.2f}x {s['ratio_median']:6.2f}x {s['ratio_cpu']:5.2f}x"
                 + (f"   {OLD:>13s}: {s['ms_old']['best']:6.1f} {s['old_ratio_best']:5.2f}x "
                    f"{s['old_ratio_median']:6.2f}x {s['old_ratio_cpu']:5.2f}x"
                    if "ms_old" in s else "") + target)
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.steps < 1 or FLAGS.rounds < 1:
    raise app.UsageError("--steps and --rounds must be >= 1")
  size = harness.get_size(FLAGS.size, FLAGS.batch_size)
  if FLAGS.gmm_components:
    size = dataclasses.replace(size, gmm_components=FLAGS.gmm_components)
  common.quiet_tensorflow()
  print(f"load average {common.load_average()}", flush=True)
  try:
    results = run_benchmark(size=size, stage_names=FLAGS.stages, steps=FLAGS.steps,
                            rounds=FLAGS.rounds)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  print(format_results(results), flush=True)
  common.write_results(FLAGS.out or common.default_out("priors"), "priors", results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
