"""What the Beam pipelines cost: dataset builds, the CMPlaces ingest and the photo index,
each with 1 and N local workers in one run.

  python -m benchmarks.data_build [--workers=1,2] [--synthcmp=default,places205]
      [--images=2000] [--image_size=227] [--run_dir=RUN] [--workdir=DIR]

Every figure is the wall time of the command a user runs, in a fresh process:
- `cmp_tf.build_data` of each SynthCMP data flagfile (`--synthcmp`), without the
  difficulty report;
- the CMPlaces ingest: a Places205-like tree of 256-px JPEGs (crops of the photos that
  ship with scikit-learn, listed in train/val_places205.csv beside images256/) built NAT
  only at `--image_size` (scan, decode, resize, PNG-encode, write), as seconds per
  10,000 images;
- with `--run_dir` (a finished run), `cmp_tf.search build` indexing that tree's JPEGs, as
  seconds per 10,000 photos.
The worker counts are interleaved per task, so each ratio is taken between neighbours.
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import common
from cmp_tf import paths

FLAGS = flags.FLAGS
CATEGORIES = ("/a/abbey", "/k/kitchen", "/b/beach", "/f/forest_path", "/d/desert/sand")


def define_flags():
  flags.DEFINE_list("workers", ["1", "2"], "Local worker counts to compare.")
  flags.DEFINE_list("synthcmp", ["default", "places205"], "SynthCMP data flagfiles "
                    "(configs/data_<name>.flags) to build; empty: none.")
  flags.DEFINE_integer("images", 2000, "Natural images of the CMPlaces-like tree (train; val "
                       "is a tenth); 0: no ingest.")
  flags.DEFINE_integer("image_size", 227, "Stored size of the ingest.")
  flags.DEFINE_string("run_dir", "", "A finished run whose NAT branch indexes the tree's "
                      "photos (empty: no index benchmark).")
  flags.DEFINE_string("workdir", "", "Where the tree and datasets go (default: a temp dir).")
  flags.DEFINE_string("out", "", "Results JSON (default benchmarks/results/data_build.json).")


def write_tree(root, images):
  """The Places205-like tree under `root`; returns (CSV paths, images root)."""
  from sklearn.datasets import load_sample_images
  photos = [np.asarray(p) for p in load_sample_images().images]
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, "labels"), exist_ok=True)
  with open(os.path.join(root, "labels", "categories.txt"), "w", encoding="utf-8") as f:
    f.writelines(f"{name} {i}\n" for i, name in enumerate(CATEGORIES))
  images_root = os.path.join(root, "images256")
  csvs = {}
  for split, count in (("train", images), ("val", max(len(CATEGORIES), images // 10))):
    lines = []
    for i in range(count):
      label = i % len(CATEGORIES)
      photo = photos[i % len(photos)]
      y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
      relpath = f"{CATEGORIES[label].lstrip('/')}/{split}{i:08d}.jpg"
      path = os.path.join(images_root, relpath)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(photo[y:y + 256, x:x + 256]).save(path, quality=90)
      lines.append(f"{relpath} {label}\n")
    csvs[split] = os.path.join(root, f"{split}_places205.csv")
    with open(csvs[split], "w", encoding="utf-8") as f:
      f.writelines(lines)
  return csvs, images_root


def timed(module, *args):
  """Wall seconds of `python -m module args` (run from the checkout); fails loudly."""
  started = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, cwd=paths.REPO_ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  wall = time.perf_counter() - started
  if result.returncode != 0:
    raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
  return wall


def _count(data_dir):
  from cmp_tf.data import manifest as manifest_lib
  manifest = manifest_lib.read_manifest(data_dir)
  return sum(s["count"] for splits in manifest["modalities"].values() for s in splits.values())


def run_benchmark(*, workers, synthcmp, images, image_size, run_dir, workdir, log=print):
  if run_dir:
    from cmp_tf import finished_run
    finished_run.check_finished(os.path.abspath(run_dir))  # before an hour of building
  results = {"synthcmp": [], "cmplaces": [], "index": []}
  for name in synthcmp:
    for n in workers:
      out = os.path.join(workdir, f"synthcmp_{name}_{n}")
      wall = timed("cmp_tf.build_data", f"--flagfile=configs/data_{name}.flags",
                   f"--data_dir={out}", f"--workers={n}", "--report=false", "--overwrite")
      count = _count(out)
      log(f"SynthCMP {name}: {count} examples with {n} worker(s) in {wall:.1f} s "
          f"(load {common.load_average()})")
      results["synthcmp"].append({"config": name, "workers": int(n), "examples": count,
                                  "wall_s": round(wall, 2)})
  if images:
    tree = os.path.join(workdir, "tree")
    csvs, images_root = write_tree(tree, images)
    for n in workers:
      out = os.path.join(workdir, f"cmplaces_{n}")
      wall = timed("cmp_tf.build_data", "--source=cmplaces", f"--cmplaces_root={tree}",
                   f"--places205_train_csv={csvs['train']}",
                   f"--places205_val_csv={csvs['val']}", f"--places205_root={images_root}",
                   "--modalities=nat", f"--image_size={image_size}", "--report=false",
                   f"--workers={n}", f"--data_dir={out}", "--overwrite")
      count = _count(out)
      per_10k = wall / count * 10000
      log(f"CMPlaces ingest at {image_size} px: {count} images with {n} worker(s) in "
          f"{wall:.1f} s -> {per_10k:.0f} s per 10,000 (load {common.load_average()})")
      results["cmplaces"].append({"image_size": image_size, "workers": int(n),
                                  "images": count, "wall_s": round(wall, 2),
                                  "seconds_per_10000": round(per_10k, 1)})
    if run_dir:
      photos = sum(len(files) for _, _, files in os.walk(images_root))
      for n in workers:
        wall = timed("cmp_tf.search", "build", f"--run_dir={run_dir}",
                     f"--images={images_root}", f"--index_dir={workdir}/index_{n}",
                     f"--workers={n}")
        per_10k = wall / photos * 10000
        log(f"photo index: {photos} photos with {n} worker(s) in {wall:.1f} s -> "
            f"{per_10k:.0f} s per 10,000 (load {common.load_average()})")
        results["index"].append({"workers": int(n), "photos": photos,
                                 "wall_s": round(wall, 2),
                                 "seconds_per_10000": round(per_10k, 1)})
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if 0 < FLAGS.images < len(CATEGORIES):
    raise app.UsageError(f"--images must be 0 or >= {len(CATEGORIES)}")
  print(f"load average {common.load_average()}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    results = run_benchmark(workers=FLAGS.workers, synthcmp=FLAGS.synthcmp,
                            images=FLAGS.images, image_size=FLAGS.image_size,
                            run_dir=FLAGS.run_dir, workdir=FLAGS.workdir or tmp)
  common.write_results(FLAGS.out or common.default_out("data_build"), "data_build",
                       results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
