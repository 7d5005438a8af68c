"""The paper's network on the CPU: full AlexNet at 227x227 with 205 categories.

  python -m benchmarks.scale [--batch_size=4] [--methods=source,c]

Times a few training steps (the trainer's own step, random input, small batch) of the
source network and of method C's stages with the full AlexNet variant, and reports
the CPU time per example and the utilisation of the CPU's matmul rate, as
benchmarks.training does. This is what a CPU would cost on the real CMPlaces setting;
benchmarks/gpu.sh times every method at this size on a GPU.
"""

import sys
import time

from absl import app, flags

from benchmarks import common, harness, training

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_enum("size", "full", list(harness.SIZES), "Model size; full: AlexNet at 227 px, "
                    "205 classes (tiny: for smoke tests).")
  flags.DEFINE_integer("batch_size", 4, "Examples per modality per step (the source: twice).")
  flags.DEFINE_list("methods", ["source", "c"], "Methods to time.")
  flags.DEFINE_integer("steps", 2, "Steps per timed round.")
  flags.DEFINE_integer("rounds", 2, "Interleaved rounds; the best is reported.")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/scale.json.")


def per_example(results):
  """{stage: {"ms_per_example", "cpu_ms_per_example"}} of training.run_benchmark's results."""
  return {name: {"ms_per_example": s["ms_per_step"] / s["examples_per_step"],
                 "cpu_ms_per_example": s["cpu_ms_per_step"] / s["examples_per_step"]}
          for name, s in results["stages"].items()}


def main(argv):
  started = time.perf_counter()
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for method in FLAGS.methods:
    if method not in training.DEFAULT_METHODS:
      raise app.UsageError(f"--methods: unknown method {method!r}")
  if FLAGS.batch_size < 1 or FLAGS.steps < 1 or FLAGS.rounds < 1:
    raise app.UsageError("--batch_size, --steps and --rounds must be >= 1")
  size = harness.get_size(FLAGS.size, FLAGS.batch_size)
  common.quiet_tensorflow()
  print(f"load average {common.load_average()}", flush=True)
  results = training.run_benchmark(size=size, methods=FLAGS.methods, steps=FLAGS.steps,
                                   rounds=FLAGS.rounds, started=started)
  results["per_example"] = per_example(results)
  print(training.format_results(results), flush=True)
  for name, figures in results["per_example"].items():
    print(f"{name:36s} {figures['ms_per_example']:8.1f} ms per example "
          f"({figures['cpu_ms_per_example']:.1f} ms CPU)", flush=True)
  common.write_results(FLAGS.out or common.default_out("scale"), "scale", results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
