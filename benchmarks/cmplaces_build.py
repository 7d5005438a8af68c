"""How long the CMPlaces ingester takes per 10,000 natural images, at a stored size.

  python -m benchmarks.cmplaces_build [--images=2000] [--image_sizes=227,64] [--workdir=DIR]

Writes a Places205-like tree (256x256 JPEGs, crops of the photos that ship with
scikit-learn, listed in train_places205.csv / val_places205.csv beside images256/ and a
labels/categories.txt) and times `cmp_tf.build_data` ingesting it, NAT only: scanning
(headers opened), decoding, resizing, PNG encoding and writing the shards. Prints
seconds per 10,000 images at each size.
"""

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import common

FLAGS = flags.FLAGS
CATEGORIES = ("/a/abbey", "/k/kitchen", "/b/beach", "/f/forest_path", "/d/desert/sand")


def define_flags():
  flags.DEFINE_integer("images", 2000, "Natural images written (train; val is a tenth).")
  flags.DEFINE_list("image_sizes", ["227", "64"], "Stored sizes to build at.")
  flags.DEFINE_string("workdir", "", "Where the tree and datasets go (default: a temp dir).")
  flags.DEFINE_string("out", "", "Results JSON (default benchmarks/results/cmplaces_build.json).")


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


def run_benchmark(*, images, image_sizes, workdir, log=print):
  from cmp_tf.data import build
  from cmp_tf.data.build_config import BuildConfig
  csvs, images_root = write_tree(os.path.join(workdir, "tree"), images)
  results = []
  for size in image_sizes:
    config = BuildConfig(
        source="cmplaces", cmplaces_root=os.path.join(workdir, "tree"),
        places205_train_csv=csvs["train"], places205_val_csv=csvs["val"],
        places205_root=images_root, modalities=("nat",), image_size=int(size),
        report=False, workers=1, overwrite=True)
    started = time.perf_counter()
    manifest = build.build_dataset(os.path.join(workdir, f"data_{size}"), config, progress=False)
    wall = time.perf_counter() - started
    count = sum(s["count"] for s in manifest["modalities"]["nat"].values())
    per_10k = wall / count * 10000
    log(f"image_size {size}: {count} images in {wall:.1f} s -> {per_10k:.0f} s per 10,000 "
        f"images (load average {common.load_average()})")
    results.append({"image_size": int(size), "images": count, "wall_s": round(wall, 2),
                    "seconds_per_10000": round(per_10k, 1)})
  return {"sizes": results}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.images < len(CATEGORIES):
    raise app.UsageError(f"--images must be >= {len(CATEGORIES)}")
  print(f"load average {common.load_average()}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    results = run_benchmark(images=FLAGS.images, image_sizes=FLAGS.image_sizes,
                            workdir=FLAGS.workdir or tmp)
  common.write_results(FLAGS.out or common.default_out("cmplaces_build"), "cmplaces_build",
                       results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
