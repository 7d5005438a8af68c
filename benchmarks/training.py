"""Training throughput and utilisation of every method, against a large matmul's rate.

  python -m benchmarks.training [--size=default|full|tiny] [--methods=c,...]
  python -m benchmarks.training --methods=a_tune_free,coral,mmd,dann,cdann,supcon  # the terms' cost
      [--jit_compile] [--inter_op_threads=N --intra_op_threads=N] [--profile]

Times the trainer's own step (cmp_tf.training.trainer.build_train_step) of every stage
of every method on random input (the input pipeline has its own benchmark), and a
chain of large float32 matmuls on the same device in the same interleaved rounds.
Utilisation = achieved FLOP/s / the machine's matmul FLOP/s (on a CPU the larger of
TensorFlow's all-thread matmul and one core's NumPy matmul times the cores), and per
CPU-second (FLOPs per CPU-second of the step / of the matmul: the steadier figure on a
shared machine), with training counted as 3x the analytic forward FLOPs
(cmp_tf.models.count_flops). Stages with the same computation
(e.g. the frozen "tune" stage of A, A (Free) and C) are timed once. A method's rate
is over its stages with equal step counts, as in configs/*.flags.

--size=default is configs/c.flags' model (alexnet_small, 64 px, 30 classes, 32 per
modality); --size=full is the paper's AlexNet at 227 px with 205 classes (for a GPU,
see benchmarks/gpu.sh); --size=tiny is for smoke tests.
"""

import dataclasses
import os
import sys
import time

from absl import app, flags

from benchmarks import common, harness, op_profile
from cmp_tf.training import recipes

FLAGS = flags.FLAGS
DEFAULT_METHODS = ("source", "bl_individual", "bl_shared_upper", "bl_shared_upper_scratch",
                   "a_tune", "a_tune_free", "b_gaussian", "b_gmm",
                   "c")
DEFAULT_PROFILE_STAGE = "c/free_statreg"
TARGET_UTILISATION = 0.35


def define_flags():
  flags.DEFINE_enum("size", "default", list(harness.SIZES), "Model size (see the module doc).")
  flags.DEFINE_integer("batch_size", 0, "Examples per modality per replica; 0: the size's.")
  flags.DEFINE_list("methods", list(DEFAULT_METHODS), "Methods to time ('source': the "
                    "source network's NAT-only stage).")
  flags.DEFINE_integer("steps", 5, "Steps per timed round.")
  flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the best is reported.")
  flags.DEFINE_boolean("jit_compile", False, "Compile the step with XLA (trainer option).")
  flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "default"], "As in cmp_tf.train.")
  flags.DEFINE_boolean("deterministic", False, "tf.config.experimental."
                       "enable_op_determinism(), as cmp_tf.train's --deterministic.")
  flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads; 0: its default.")
  flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads; 0: its default.")
  flags.DEFINE_integer("matmul_size", 0, "Side of the reference matmul; 0: 2048 on a CPU, "
                       "8192 on a GPU, 256 for --size=tiny.")
  flags.DEFINE_float("time_budget_s", 0, "Stop building new stages once this many seconds "
                     "have passed since start, and timing rounds at the budget (0: none).")
  flags.DEFINE_boolean("profile", False, "Trace a few steps of --profile_stage with "
                       "tf.profiler and print the time per op type.")
  flags.DEFINE_string("profile_stage", DEFAULT_PROFILE_STAGE, "method/stage to profile.")
  flags.DEFINE_string("profile_dir", "", "Where the trace goes; empty: a temp dir.")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/training[_<size>].json.")


def _stage_key(stage):
  """What a stage computes: two stages with one key run the same step."""
  return (tuple(stage.modalities), stage.share_upper, stage.freeze_upper,
          tuple((u.kind, u.layer) for u in stage.priors),
          tuple((a.term, a.layer) for a in stage.alignment))


def run_benchmark(*, size, methods, steps, rounds, jit_compile=False, strategy_name="mirrored",
                  matmul_size=0, time_budget_s=0.0, profile_stage="", profile_dir="",
                  started=None, log=print):
  """Times every stage of `methods` at `size` (a harness.Size); returns the results dict."""
  import tensorflow as tf

  from cmp_tf.training import strategy as strategy_lib

  started = time.perf_counter() if started is None else started
  planned = {method: harness.method_stages(method) for method in methods}
  names = [f"{method}/{name}" for method, entries in planned.items() for name, _ in entries]
  if profile_stage and profile_stage not in names:
    raise ValueError(f"--profile_stage: {profile_stage!r} is not a stage of --methods "
                     f"({', '.join(names)})")
  strategy = strategy_lib.make_strategy(strategy_name)
  on_gpu = bool(tf.config.list_logical_devices("GPU"))
  matmul_size = matmul_size or (256 if size.variant == "alexnet_tiny" else
                                8192 if on_gpu else 2048)
  reference = common.MatmulReference(size=matmul_size)
  core_reference = None if on_gpu else common.CoreMatmulReference(size=matmul_size)

  def out_of_time(fraction=1.0):
    return time_budget_s > 0 and time.perf_counter() - started > fraction * time_budget_s

  unique, method_stages, skipped = {}, {}, []
  for method, entries in planned.items():
    method_stages[method] = []
    for stage_name, stage in entries:
      full_name = f"{method}/{stage_name}"
      key = _stage_key(stage)
      if key not in unique:
        if out_of_time(0.8):  # leave time for the timed rounds
          skipped.append(full_name)
          continue
        build_start = time.perf_counter()
        step = harness.build_stage_step(
            full_name, stage, size, strategy, jit_compile=jit_compile,
            batch_size=size.source_batch_size if method == "source" else None)
        step.run()  # traces the step
        step.run()
        unique[key] = {"step": step, "same_as": [], "build_s": time.perf_counter() - build_start}
        log(f"built {full_name}: {step.examples_per_step} examples/step, "
            f"{step.flops_per_step / 1e9:.2f} GFLOP/step, "
            f"{time.perf_counter() - build_start:.1f} s to build and trace", flush=True)
      else:
        unique[key]["same_as"].append(full_name)
      method_stages[method].append((full_name, key))

  references = {"matmul": reference}
  if core_reference is not None:
    references["matmul_one_core"] = core_reference
  functions = {name: ref.run for name, ref in references.items()}
  for entry in unique.values():
    functions[entry["step"].name] = harness.run_steps(entry["step"], steps)
  timings = {name: common.Timing(1 if name in references else steps) for name in functions}
  for round_index in range(rounds):  # interleaved, as common.interleaved, within the budget
    if round_index and out_of_time():
      break
    for name, fn in functions.items():
      timings[name].add(*common.time_once(fn))
  matmul = timings["matmul"].summary()
  rates = {name: references[name].flops / timings[name].summary()["best"] for name in references}
  cpu_rates = {name: references[name].flops / timings[name].summary()["cpu_best"]
               for name in references}
  cores = common.usable_cores()
  # The machine's matmul rate (wall) and its rate per CPU-second, the larger measurement.
  matmul_rate = max(rates["matmul"], rates.get("matmul_one_core", 0.0) * cores)
  matmul_cpu_rate = None if on_gpu else max(cpu_rates.values())

  stages_out = {}
  for entry in unique.values():
    step = entry["step"]
    t = timings[step.name].summary()
    stages_out[step.name] = {
        "same_as": entry["same_as"], "ms_per_step": t["best"] * 1e3,
        "ms_per_step_median": t["median"] * 1e3, "cpu_ms_per_step": t["cpu_best"] * 1e3,
        "examples_per_step": step.examples_per_step,
        "examples_per_s": step.examples_per_step / t["best"],
        "gflop_per_step": step.flops_per_step / 1e9,
        "flops_per_s": step.flops_per_step / t["best"],
        "utilisation": step.flops_per_step / t["best"] / matmul_rate,
        "cpu_utilisation": (None if matmul_cpu_rate is None else
                            step.flops_per_step / t["cpu_best"] / matmul_cpu_rate),
        "trainable_variables": step.trainable_variables, "build_s": entry["build_s"],
        "rounds": t["rounds"]}
  methods_out = {}
  for method, entries in method_stages.items():
    if not entries or any(unique[key]["step"].name not in stages_out for _, key in entries):
      continue
    timed = [stages_out[unique[key]["step"].name] for _, key in entries]
    seconds = sum(s["ms_per_step"] for s in timed) / 1e3
    cpu_seconds = sum(s["cpu_ms_per_step"] for s in timed) / 1e3
    flops = sum(s["gflop_per_step"] for s in timed) * 1e9
    methods_out[method] = {
        "stages": [name for name, _ in entries],
        "examples_per_s": sum(s["examples_per_step"] for s in timed) / seconds,
        "flops_per_s": flops / seconds, "utilisation": flops / seconds / matmul_rate,
        "cpu_utilisation": (None if matmul_cpu_rate is None else
                            flops / cpu_seconds / matmul_cpu_rate)}

  results = {
      "size": dataclasses.asdict(size), "steps_per_round": steps, "jit_compile": jit_compile,
      "strategy": strategy_name, "replicas": strategy.num_replicas_in_sync,
      "threads": {"inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                  "intra_op": tf.config.threading.get_intra_op_parallelism_threads()},
      "tensor_float_32": tf.config.experimental.tensor_float_32_execution_enabled(),
      "matmul": {**reference.describe(matmul["best"]), "ms_median": matmul["median"] * 1e3,
                 "one_core_flops_per_s": rates.get("matmul_one_core"), "cores": cores,
                 "reference_flops_per_s": matmul_rate,
                 "reference_flops_per_cpu_s": matmul_cpu_rate},
      "stages": stages_out, "methods": methods_out, "skipped": skipped,
      "training_flops": "3 x analytic forward FLOPs (cmp_tf.models.count_flops)",
      "target_utilisation": TARGET_UTILISATION, "wall_s": time.perf_counter() - started}
  if profile_stage and profile_stage in skipped:
    log(f"not profiled: {profile_stage} was skipped (time budget)", flush=True)
  elif profile_stage:
    match = [e["step"] for e in unique.values()
             if e["step"].name == profile_stage or profile_stage in e["same_as"]]
    import tempfile
    logdir = profile_dir or tempfile.mkdtemp(prefix="cmp_tf_profile_")
    trace = op_profile.capture(match[0].run, 3, logdir)
    results["profile"] = {"stage": profile_stage, "trace": trace,
                          "ops": [{"op": k, "ms": ms, "share": share, "calls": n}
                                  for k, ms, share, n in op_profile.op_table(trace)]}
  return results


def _pct(value):
  return "     -" if value is None else f"{value:6.1%}"


def format_results(results):
  """The figures as printed lines."""
  size = results["size"]
  matmul = results["matmul"]
  lines = []
  if "cpu" in results:
    usage = results["process"]
    kernels = "oneDNN" if results["cpu"].get("onednn") else "Eigen"
    lines.append(f"{results['cpu']['model']} ({', '.join(results['cpu']['flags']) or 'no AVX'});"
                 f" {kernels} kernels;"
                 f" {results['allocator']}; process CPU {usage['user_s']:.0f} s user + "
                 f"{usage['system_s']:.0f} s kernel ({usage['system_share']:.1%}), "
                 f"{usage['minor_faults']:,} minor page faults")
  lines += [f"{size['variant']} at {size['image_size']} px, {size['num_classes']} classes, "
           f"batch {size['batch_size']} per modality, {results['replicas']} replica(s), "
           f"jit_compile={results['jit_compile']}, threads inter/intra "
           f"{results['threads']['inter_op']}/{results['threads']['intra_op']} (0 = default)"]
  reference = (f"reference: TensorFlow matmul {matmul['size']}^2 on {matmul['device']} "
               f"{common.fmt_rate(matmul['flops_per_s'])} (median round "
               f"{matmul['ms_median']:.0f} ms)")
  if matmul["one_core_flops_per_s"]:
    reference += (f", one core {common.fmt_rate(matmul['one_core_flops_per_s'])} x "
                  f"{matmul['cores']} cores; machine {common.fmt_rate(matmul['reference_flops_per_s'])}"
                  f", {common.fmt_rate(matmul['reference_flops_per_cpu_s'])} per CPU-second")
  lines += [reference,
            "util: FLOP/s / machine matmul FLOP/s; cpu util: FLOPs per CPU-second / matmul "
            "FLOPs per CPU-second (steadier on a shared machine)",
            f"{'stage':36s} {'ms/step':>8s} {'cpu ms':>7s} {'ex/s':>7s} {'GFLOP/s':>8s} "
            f"{'util':>6s} {'cpu util':>8s}"]
  for name, s in results["stages"].items():
    lines.append(f"{name:36s} {s['ms_per_step']:8.1f} {s['cpu_ms_per_step']:7.1f} "
                 f"{s['examples_per_s']:7.0f} {s['flops_per_s'] / 1e9:8.1f} "
                 f"{_pct(s['utilisation'])}   {_pct(s['cpu_utilisation'])}")
    if s["same_as"]:
      lines.append(f"{'':4s}(also {', '.join(s['same_as'])})")
  lines.append(f"{'method':36s} {'ex/s':>7s} {'GFLOP/s':>8s} {'util':>6s} {'cpu util':>8s}")
  for name, m in results["methods"].items():
    lines.append(f"{name:36s} {m['examples_per_s']:7.0f} {m['flops_per_s'] / 1e9:8.1f} "
                 f"{_pct(m['utilisation'])}   {_pct(m['cpu_utilisation'])}")
  if results["skipped"]:
    lines.append(f"skipped (time budget): {', '.join(results['skipped'])}")
  default = results["methods"].get("c")
  if default is not None and size["variant"] == harness.SIZES["default"].variant:
    target = results["target_utilisation"]
    verdicts = [f"{default['utilisation']:.1%} of the machine's matmul rate"]
    if default["cpu_utilisation"] is not None:
      verdicts.append(f"{default['cpu_utilisation']:.1%} per CPU-second")
    best = max(v for v in (default["utilisation"], default["cpu_utilisation"]) if v is not None)
    lines.append(f"C (the default method): utilisation {', '.join(verdicts)} "
                 f"(target >= {target:.0%}: {'met' if best >= target else 'MISSED'})")
  if "profile" in results:
    lines.append(f"time per op type, {results['profile']['stage']} "
                 f"(trace in {os.path.dirname(results['profile']['trace'])}):")
    lines.append(op_profile.format_table(
        [(o["op"], o["ms"], o["share"], o["calls"]) for o in results["profile"]["ops"]]))
  return "\n".join(lines)


def main(argv):
  started = time.perf_counter()
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from cmp_tf import cpu, memory
  allocator = memory.keep_freed_memory()  # as every command; CMP_TF_MALLOC=system: not
  import tensorflow as tf

  if FLAGS.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  if FLAGS.intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  known = ("source", *recipes.METHOD_NAMES)
  for method in FLAGS.methods:
    if method not in known:
      raise app.UsageError(f"--methods: unknown method {method!r}; expected some of "
                           f"{', '.join(known)}")
  if FLAGS.steps < 1 or FLAGS.rounds < 1:
    raise app.UsageError("--steps and --rounds must be >= 1")
  size = harness.get_size(FLAGS.size, FLAGS.batch_size)
  common.quiet_tensorflow()
  print(f"load average {common.load_average()}", flush=True)
  try:
    results = run_benchmark(
        size=size, methods=FLAGS.methods, steps=FLAGS.steps, rounds=FLAGS.rounds,
        jit_compile=FLAGS.jit_compile, strategy_name=FLAGS.strategy,
        matmul_size=FLAGS.matmul_size, time_budget_s=FLAGS.time_budget_s,
        profile_stage=FLAGS.profile_stage if FLAGS.profile else "",
        profile_dir=FLAGS.profile_dir, started=started)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  results["allocator"] = allocator
  results["process"] = common.process_usage()
  results["cpu"] = {"model": cpu.model(), "flags": cpu.vector_flags(),
                    "onednn": cpu.onednn_enabled()}
  print(format_results(results), flush=True)
  suffix = "" if FLAGS.size == "default" else f"_{FLAGS.size}"
  common.write_results(FLAGS.out or common.default_out(f"training{suffix}"), "training",
                       results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
