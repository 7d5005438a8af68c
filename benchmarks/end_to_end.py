"""The default command end to end: wall time and peak memory from an empty cache.

  python -m benchmarks.end_to_end [--train_flagfile=configs/c.flags] [--workdir=DIR]
      [--extra_flags=--noexport,...]

Runs `python -m cmp_tf.train --flagfile=configs/c.flags --cache_dir=<new> --run_dir=<new>`
(dataset build, source network, priors, both stages, evaluation and export) as a child
process and records its wall time, its CPU time, the peak memory (the largest process,
from getrusage, and the whole process tree, sampled from /proc every second), the load
average over the run (the machine may be shared), and when each phase ended.
Targets: <= 15 minutes and <= 6 GB on 2 cores. Takes ~10+ minutes of every core.
"""

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

from benchmarks import common
from cmp_tf import paths

FLAGS = flags.FLAGS
TARGET_SECONDS = 15 * 60
TARGET_BYTES = 6 * 2**30
# Lines of cmp_tf.train's output that end a phase.
_MILESTONES = re.compile(r"dataset built|source network|fitted \w+ prior|stage \d+ \(.*\) done|"
                         r"evaluation written|export: version|run finished")


def define_flags():
  flags.DEFINE_string("train_flagfile", str(paths.CONFIGS_DIR / "c.flags"),
                      "Flagfile of the command to run.")
  flags.DEFINE_list("extra_flags", [], "More flags for cmp_tf.train (after the flagfile).")
  flags.DEFINE_string("workdir", "", "Where the cache and the run go; empty: a new temp dir, "
                      "removed afterwards unless --keep.")
  flags.DEFINE_boolean("keep", False, "Keep the temp workdir.")
  flags.DEFINE_float("sample_every_s", 1.0, "Seconds between memory and load samples.")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/end_to_end.json.")


def _children(pid):
  """Every descendant process id of `pid` (from /proc)."""
  parents = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      parents.setdefault(int(fields[1]), []).append(int(entry))
    except (OSError, IndexError, ValueError):
      continue
  found, todo = [], [pid]
  while todo:
    for child in parents.get(todo.pop(), []):
      found.append(child)
      todo.append(child)
  return found


def _rss_bytes(pid):
  try:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


class _Sampler(threading.Thread):
  """Samples the process tree's total RSS and the load average until stopped."""

  def __init__(self, pid, every_s):
    super().__init__(daemon=True)
    self.pid, self.every_s = pid, every_s
    self.peak_tree_bytes, self.loads = 0, []
    self._done = threading.Event()

  def run(self):
    while not self._done.is_set():
      pids = [self.pid] + _children(self.pid)
      self.peak_tree_bytes = max(self.peak_tree_bytes, sum(_rss_bytes(p) for p in pids))
      self.loads.append(os.getloadavg()[0])
      self._done.wait(self.every_s)

  def stop(self):
    self._done.set()
    self.join()


def run_command(command, log_path, sample_every_s=1.0, echo=True):
  """Runs `command`, streaming its output to `log_path`; returns the measurements."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  milestones = []
  with open(log_path, "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, cwd=str(paths.REPO_ROOT))
    sampler = _Sampler(process.pid, sample_every_s)
    sampler.start()
    for line in process.stdout:
      elapsed = time.perf_counter() - start
      log.write(f"[{elapsed:7.1f} s] {line}")
      if _MILESTONES.search(line):
        milestones.append({"s": round(elapsed, 1), "line": line.strip()})
      if echo:
        print(line, end="", flush=True)
    returncode = process.wait()
    wall = time.perf_counter() - start
    sampler.stop()
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  loads = sampler.loads or [os.getloadavg()[0]]
  system = after.ru_stime - before.ru_stime
  return {"command": command, "returncode": returncode, "wall_s": wall, "cpu_s": cpu,
          "system_cpu_s": system, "system_share": system / cpu if cpu > 0 else None,
          "minor_faults": after.ru_minflt - before.ru_minflt,
          "cores_used": cpu / wall if wall > 0 else 0.0,
          "peak_rss_largest_process_bytes": after.ru_maxrss * 1024,  # ru_maxrss is in KiB
          "peak_rss_process_tree_bytes": sampler.peak_tree_bytes,
          "load_average_1min": {"min": min(loads), "mean": statistics.fmean(loads),
                                "max": max(loads), "samples": len(loads)},
          "milestones": milestones, "log": log_path}


def format_results(r):
  gib = 2**30
  peak = max(r["peak_rss_process_tree_bytes"], r["peak_rss_largest_process_bytes"])
  loads = r["load_average_1min"]
  lines = [f"{' '.join(r['command'])}",
           f"  exit status {r['returncode']}; wall {r['wall_s'] / 60:.1f} min (target <= "
           f"{TARGET_SECONDS / 60:.0f}: {'met' if r['wall_s'] <= TARGET_SECONDS else 'MISSED'}), "
           f"CPU {r['cpu_s'] / 60:.1f} min ({r['cores_used']:.2f} cores on average), "
           f"{r['system_share'] or 0:.1%} of it in the kernel, {r['minor_faults']:,} minor "
           "page faults",
           f"  peak memory {peak / gib:.2f} GiB (largest process "
           f"{r['peak_rss_largest_process_bytes'] / gib:.2f} GiB, process tree "
           f"{r['peak_rss_process_tree_bytes'] / gib:.2f} GiB; target <= "
           f"{TARGET_BYTES / gib:.0f} GB: {'met' if peak <= TARGET_BYTES else 'MISSED'})",
           f"  load average during the run: min {loads['min']:.2f}, mean {loads['mean']:.2f}, "
           f"max {loads['max']:.2f} on {os.cpu_count()} CPUs"]
  for m in r["milestones"]:
    lines.append(f"  {m['s']:7.1f} s  {m['line'][:110]}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not os.path.isfile(FLAGS.train_flagfile):
    raise app.UsageError(f"--train_flagfile: no such file: {FLAGS.train_flagfile}")
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="cmp_tf_end_to_end_")
  if os.path.exists(os.path.join(workdir, "cache")):
    raise app.UsageError(f"--workdir: {workdir}/cache exists; the run must start from an "
                         "empty cache")
  os.makedirs(workdir, exist_ok=True)
  command = [sys.executable, "-m", "cmp_tf.train",
             f"--flagfile={os.path.abspath(FLAGS.train_flagfile)}",
             f"--cache_dir={os.path.join(workdir, 'cache')}",
             f"--run_dir={os.path.join(workdir, 'run')}", *FLAGS.extra_flags]
  print(f"load average {common.load_average()}; running: {' '.join(command)}", flush=True)
  results = run_command(command, os.path.join(workdir, "train.log"), FLAGS.sample_every_s)
  results.update(targets={"wall_s": TARGET_SECONDS, "peak_bytes": TARGET_BYTES},
                 load_average_after=common.load_average())
  print(format_results(results), flush=True)
  out = FLAGS.out or common.default_out("end_to_end")
  if not FLAGS.workdir and not FLAGS.keep:
    shutil.rmtree(workdir, ignore_errors=True)
    results["log"] = None
  common.write_results(out, "end_to_end", results, sys.argv)
  return 0 if results["returncode"] == 0 else 1


if __name__ == "__main__":
  define_flags()
  app.run(main)
