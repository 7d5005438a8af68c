"""Latency of the photo-search web service: p50 / p95 per query kind, and its start-up.

  python -m benchmarks.web --run_dir=DIR [--photos_per_category=340] [--queries=100]
      [--workdir=DIR]

Builds a NAT-only SynthCMP photo collection (`--photos_per_category` per category, seed 1,
photos the run never trained on; the default gives 10,200) and its index with the run's
NAT branch, starts the service (`cmp_tf.serving.web_api`) under uvicorn on a free local
port, then sends `--queries` POST /api/search requests per modality over HTTP: the
validation images of LDR, CLP and NAT, layouts of 2-5 known words at random places, and
the validation descriptions. Reports the client's round-trip and the server's own
latency_ms (p50, p95), the first query apart. Target: p50 <= 100 ms for every modality.
"""

import base64
import os
import socket
import sys
import tempfile
import threading
import time

import numpy as np
from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
TARGET_P50_MS = 100.0


def define_flags():
  flags.DEFINE_string("run_dir", None, "A finished run (exported or not).", required=True)
  flags.DEFINE_integer("photos_per_category", 340, "NAT photos per category in the index.")
  flags.DEFINE_integer("queries", 100, "Queries per modality.")
  flags.DEFINE_string("workdir", "", "Where the photos and the index go (default: temp).")
  flags.DEFINE_string("out", "", "Results JSON (default benchmarks/results/web.json).")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _bodies(service, count, seed=0):
  """{modality: [request bodies]}: real validation inputs, random known-word layouts."""
  from cmp_tf import modalities as mod_lib
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.data import tfrecord_io

  rng = np.random.default_rng(seed)
  manifest = service.run.manifest
  out = {}
  for modality in service.modalities:
    if modality == mod_lib.SPT:
      words = sorted(service.vocabulary or ["sky", "tree"])
      out[modality] = [{"modality": modality, "layout": [
          {"word": str(w), "x": float(rng.uniform()), "y": float(rng.uniform())}
          for w in rng.choice(words, int(rng.integers(2, 6)), replace=False)]}
          for _ in range(count)]
      continue
    records = tfrecord_io.read_records(manifest_lib.shard_paths(
        manifest, service.run.data_dir, modality, "val"))
    picked = [records[i % len(records)] for i in range(count)]
    if modality == mod_lib.DSC:
      out[modality] = [{"modality": modality, "text": r.text} for r in picked]
    else:
      out[modality] = [{"modality": modality,
                        "image": base64.b64encode(r.image_png).decode("ascii")} for r in picked]
  return out


def run_benchmark(*, run_dir, photos_per_category, queries, workdir, log=print):
  import httpx
  import uvicorn

  from cmp_tf import cli
  from cmp_tf.data import build
  from cmp_tf.data.build_config import DEFAULT_FLAGFILE, BuildConfig
  from cmp_tf.serving import search, web_api

  photos = os.path.join(workdir, "photos")
  if not os.path.isfile(os.path.join(photos, "manifest.json")):
    build.build_dataset(photos, cli.config_from_flagfile(
        BuildConfig, DEFAULT_FLAGFILE, modalities=("nat",),
        nat_train_per_category=photos_per_category, dev_per_category=0, val_per_category=1,
        seed=1, report=False), progress=False)
  index_dir = os.path.join(workdir, "index")
  if not os.path.isfile(os.path.join(index_dir, "index.json")):
    started = time.perf_counter()
    search.build_search_index(run_dir, images=photos, split="train", index_dir=index_dir,
                              progress=False)
    log(f"index built in {time.perf_counter() - started:.1f} s")
  started = time.perf_counter()
  service = web_api.SearchService(run_dir, index_dir=index_dir, progress=False)
  startup = time.perf_counter() - started
  log(f"service loaded in {startup:.1f} s: {len(service.index)} photos, {service.backend}")
  port = _free_port()
  server = uvicorn.Server(uvicorn.Config(web_api.create_app(service), host="127.0.0.1",
                                         port=port, log_level="warning"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  while not server.started:
    time.sleep(0.05)
  results = {"index_size": len(service.index), "backend": service.backend,
             "startup_s": round(startup, 2), "modalities": {}}
  try:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
      for modality, bodies in _bodies(service, queries + 1).items():
        round_trip, server_ms = [], []
        for body in bodies:
          t = time.perf_counter()
          response = client.post("/api/search", json={**body, "k": 12})
          round_trip.append(1000 * (time.perf_counter() - t))
          response.raise_for_status()
          server_ms.append(response.json()["latency_ms"])
        rt, sv = np.asarray(round_trip[1:]), np.asarray(server_ms[1:])
        entry = {"first_ms": round(round_trip[0], 1), "queries": len(rt),
                 "p50_ms": round(float(np.percentile(rt, 50)), 1),
                 "p95_ms": round(float(np.percentile(rt, 95)), 1),
                 "server_p50_ms": round(float(np.percentile(sv, 50)), 1),
                 "server_p95_ms": round(float(np.percentile(sv, 95)), 1)}
        entry["meets_target"] = entry["p50_ms"] <= TARGET_P50_MS
        results["modalities"][modality] = entry
        log(f"{modality.upper()}: p50 {entry['p50_ms']} ms, p95 {entry['p95_ms']} ms "
            f"(server {entry['server_p50_ms']} / {entry['server_p95_ms']} ms; first "
            f"{entry['first_ms']} ms)")
  finally:
    server.should_exit = True
    thread.join(timeout=10)
  results["target_p50_ms"] = TARGET_P50_MS
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.queries < 1 or FLAGS.photos_per_category < 1:
    raise app.UsageError("--queries and --photos_per_category must be >= 1")
  common.quiet_tensorflow()
  import logging
  logging.getLogger("httpx").setLevel(logging.WARNING)
  print(f"load average {common.load_average()}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    results = run_benchmark(run_dir=FLAGS.run_dir, photos_per_category=FLAGS.photos_per_category,
                            queries=FLAGS.queries, workdir=FLAGS.workdir or tmp)
  print(f"load average {common.load_average()}", flush=True)
  common.write_results(FLAGS.out or common.default_out("web"), "web", results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
