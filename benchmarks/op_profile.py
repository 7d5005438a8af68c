"""Which TensorFlow ops a step spends its time in, from a tf.profiler trace.

`capture` records a few calls with `tf.profiler.experimental` (the trace also opens in
TensorBoard's profile plugin); `op_table` reads the trace's XPlane protobuf and sums
the duration of every executed op by op type. XLA-compiled functions (the priors' NLL)
appear as one "XLA executable" row. Inter-op parallelism runs ops side by side, so
the sum can exceed the wall time; the shares are of the summed op time.
"""

import collections
import glob
import os


def capture(run, calls, logdir):
  """Traces `calls` calls of `run()` into `logdir`; returns the .xplane.pb path."""
  import tensorflow as tf

  tf.profiler.experimental.start(logdir)
  try:
    for _ in range(calls):
      run()
  finally:
    tf.profiler.experimental.stop()
  found = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
  if not found:
    raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
  return found[-1]


def op_table(xplane_path, top=15):
  """[(op type, total ms, share, count)] of the executed ops, largest first."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2

  space = xplane_pb2.XSpace()
  with open(xplane_path, "rb") as f:
    space.ParseFromString(f.read())
  totals, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not (plane.name.startswith("/host:CPU") or plane.name.startswith("/device:")):
      continue
    for line in plane.lines:
      if not line.name.startswith(("tf_Compute", "TensorFlow Ops", "XLA Ops")):
        continue
      for event in line.events:
        meta = plane.event_metadata[event.metadata_id]
        if meta.display_name and ":" in meta.name:  # "op_name:OpType"
          kind = meta.display_name
        elif meta.name == "CpuExecutable::ExecuteAsyncOnStream":
          kind = "XLA executable"
        else:
          continue
        totals[kind] += event.duration_ps
        counts[kind] += 1
  grand = sum(totals.values()) or 1
  return [(kind, ps / 1e9, ps / grand, counts[kind]) for kind, ps in totals.most_common(top)]


def format_table(rows):
  lines = [f"  {'op type':40s} {'ms':>9s} {'share':>7s} {'calls':>6s}"]
  for kind, ms, share, count in rows:
    lines.append(f"  {kind[:40]:40s} {ms:9.1f} {share:7.1%} {count:6d}")
  return "\n".join(lines)
