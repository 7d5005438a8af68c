"""A tiny CMPlaces tree in the published layout, built in a temp dir for tests.

NAT images are crops, rescales and re-encodings (grey, CMYK, RGB) of the real
photos that ship with scikit-learn; clip art (RGBA and palette PNGs with
transparency), line drawings (grey and 1-bit PNGs) and spatial text are drawn
with PIL; descriptions are UTF-8 text files. The category file lists the
categories in an order that is not sorted, so tests can tell file indices from
sorted ones.
"""

import dataclasses
import os
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_sample_images

# (line in categories.txt, bare name, objects drawn or named, description sentences)
CATEGORY_LINES = ("/k/kitchen 0", "/a/abbey 1", "/d/desert/sand 2")
CATEGORIES = ("kitchen", "abbey", "desert/sand")
_OBJECTS = {
    "kitchen": ("stove", "sink", "table", "window"),
    "abbey": ("tower", "arch", "door", "tree"),
    "desert/sand": ("dune", "sun", "cactus", "sky"),
}
_SENTENCES = {
    "kitchen": ("There is a stove next to the sink.", "A small table stands by the window.",
                "Pots hang on the wall!", "Is the kettle on?"),
    "abbey": ("An old stone tower rises above the trees.", "The arched door is made of oak.",
              "Monks walk in the cloister.", "Bells ring at noon."),
    "desert/sand": ("Dunes stretch to the horizon.", "The sun is very hot.",
                    "A lone cactus stands in the sand.", "There is no water anywhere."),
}
# Examples per category and split; NAT is the large modality, as in CMPlaces.
COUNTS = {"nat": {"train": 3, "val": 1}, "clp": {"train": 2, "val": 1},
          "spt": {"train": 2, "val": 1}, "ldr": {"train": 2, "val": 1},
          "dsc": {"train": 2, "val": 1}}
# DSC's val list is written as dsc_test.txt, to exercise the "test" alias.
VAL_FILE_NAME = {"dsc": "test"}


@dataclasses.dataclass
class Fixture:
  root: pathlib.Path
  categories: tuple
  counts: dict  # {modality: {split: examples}}

  def label_file(self, modality, split):
    name = VAL_FILE_NAME.get(modality, split) if split == "val" else split
    return self.root / "labels" / f"{modality}_{name}.txt"

  def append_line(self, modality, split, line):
    """Appends a label line; returns its line number."""
    path = self.label_file(modality, split)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _photos():
  return [np.asarray(image) for image in load_sample_images().images]


def _nat_image(photos, index):
  """A crop/rescale of a real photo; every 4th grey, every 5th CMYK."""
  rng = np.random.default_rng(index)
  photo = photos[index % len(photos)]
  h, w = photo.shape[:2]
  ch, cw = int(h * rng.uniform(0.4, 0.9)), int(w * rng.uniform(0.4, 0.9))
  y, x = rng.integers(0, h - ch), rng.integers(0, w - cw)
  image = Image.fromarray(photo[y:y + ch, x:x + cw])
  image = image.resize((int(rng.integers(60, 160)), int(rng.integers(60, 160))))
  if index % 2:
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  if index % 4 == 3:
    return image.convert("L")
  if index % 5 == 4:
    return image.convert("CMYK")
  return image


def _clipart(objects, index):
  """Flat saturated shapes with bold outlines on a transparent background."""
  rng = np.random.default_rng(100 + index)
  image = Image.new("RGBA", (96, 80), (0, 0, 0, 0))
  draw = ImageDraw.Draw(image)
  for i, _ in enumerate(objects):
    x, y = int(rng.integers(0, 60)), int(rng.integers(0, 50))
    fill = tuple(int(v) for v in rng.choice([0, 255], size=3)) + (255,)
    box = (x, y, x + 20 + 5 * i, y + 18 + 3 * i)
    (draw.ellipse if i % 2 else draw.rectangle)(box, fill=fill, outline=(0, 0, 0, 255), width=3)
  return image.convert("P") if index % 2 else image  # palette PNGs keep the transparency


def _line_drawing(objects, index):
  """Black wobbly strokes on white, no fill."""
  rng = np.random.default_rng(200 + index)
  image = Image.new("L", (90, 90), 255)
  draw = ImageDraw.Draw(image)
  for _ in objects:
    points = [(int(rng.integers(0, 90)), int(rng.integers(0, 90))) for _ in range(4)]
    draw.line(points, fill=0, width=2)
  return image.convert("1") if index % 2 else image


def _spatial_text(objects, index):
  """Object names written where the objects would be, font size from object size."""
  rng = np.random.default_rng(300 + index)
  image = Image.new("RGB", (100, 100), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  for name in objects:
    font = ImageFont.load_default(size=int(rng.integers(9, 20)))
    draw.text((int(rng.integers(0, 60)), int(rng.integers(0, 85))), name, fill=(0, 0, 0),
              font=font)
  return image


def _description(category, index):
  sentences = _SENTENCES[category]
  count = 2 + index % 3
  return " ".join(sentences[(index + i) % len(sentences)] for i in range(count))


def build(root, places205_dir=None):
  """Writes the tree under `root` and returns a Fixture describing it.

  With `places205_dir`, NAT images are also written in Places205's own layout:
  places205_dir/images/<letter>/<name>/NNNNNNNN.jpg listed in
  places205_dir/train_places205.csv and val_places205.csv.
  """
  root = pathlib.Path(root)
  (root / "labels").mkdir(parents=True)
  (root / "labels" / "categories.txt").write_text("\n".join(CATEGORY_LINES) + "\n")
  photos = _photos()
  drawers = {"clp": _clipart, "ldr": _line_drawing, "spt": _spatial_text}
  serial = 0
  for modality, per_split in COUNTS.items():
    for split, count in per_split.items():
      lines = []
      for label, category in enumerate(CATEGORIES):
        for i in range(count):
          serial += 1
          directory = root / modality / category
          directory.mkdir(parents=True, exist_ok=True)
          if modality == "dsc":
            path = directory / f"{split}_{i:03d}.txt"
            path.write_text(_description(category, serial), encoding="utf-8")
          elif modality == "nat":
            path = directory / f"{split}_{i:03d}.jpg"
            _nat_image(photos, serial).save(path, quality=90)
          else:
            path = directory / f"{split}_{i:03d}.png"
            drawers[modality](_OBJECTS[category], serial).save(path)
          lines.append(f"{path.relative_to(root).as_posix()} {label}")
      name = VAL_FILE_NAME.get(modality, split) if split == "val" else split
      (root / "labels" / f"{modality}_{name}.txt").write_text("\n".join(lines) + "\n")
  if places205_dir is not None:
    _write_places205(pathlib.Path(places205_dir), photos)
  return Fixture(root=root, categories=CATEGORIES,
                 counts={m: dict(s) for m, s in COUNTS.items()})


def _write_places205(directory, photos):
  for split, count in COUNTS["nat"].items():
    lines = []
    for label, line in enumerate(CATEGORY_LINES):
      letter_dir = line.split()[0].lstrip("/")
      for i in range(count):
        relpath = f"{letter_dir}/{i + (0 if split == 'train' else 100):08d}.jpg"
        path = directory / "images" / relpath
        os.makedirs(path.parent, exist_ok=True)
        _nat_image(photos, 1000 + 10 * label + i).convert("RGB").save(path, quality=85)
        lines.append(f"{relpath} {label}")
    (directory / f"{split}_places205.csv").write_text("\n".join(lines) + "\n")


# The published starter kit's names of the label files (descriptions: verified; the others
# are the aliases the ingester accepts), and where the kit keeps the files they list.
KIT_LABEL_NAMES = {"clp": "clipart", "spt": "spatialtext", "ldr": "linedrawings",
                   "dsc": "text"}
KIT_COUNTS = {"nat": {"train": 12, "val": 2}, "clp": {"train": 6, "val": 2},
              "spt": {"train": 6, "val": 2}, "ldr": {"train": 6, "val": 2},
              "dsc": {"train": 6, "val": 2}}


@dataclasses.dataclass
class KitFixture:
  root: pathlib.Path  # labels/ (and data/, unless files_root is elsewhere)
  files_root: pathlib.Path  # the directory holding data/
  places205: pathlib.Path  # train_places205.csv, val_places205.csv, images256/
  categories: tuple
  counts: dict


def build_kit(root, *, files_root=None, places205_dir=None, counts=KIT_COUNTS):
  """The published layout: labels/<kit name>_<split>.txt listing data/<kit name>/<letter>/
  <category>/<file> (descriptions: data/text/...), NAT only in Places205's CSVs with their
  images256/ folder. With `files_root`, data/ is written there instead of under `root`."""
  root = pathlib.Path(root)
  files_root = pathlib.Path(files_root or root)
  places = pathlib.Path(places205_dir or root.parent / "places205")
  (root / "labels").mkdir(parents=True)
  (root / "labels" / "categories.txt").write_text("\n".join(CATEGORY_LINES) + "\n")
  photos = _photos()
  drawers = {"clp": _clipart, "ldr": _line_drawing, "spt": _spatial_text}
  serial = 0
  for modality, name in KIT_LABEL_NAMES.items():
    for split, count in counts[modality].items():
      lines = []
      for label, line in enumerate(CATEGORY_LINES):
        letter_dir = line.split()[0].lstrip("/")  # k/kitchen, d/desert/sand
        for i in range(count):
          serial += 1
          relpath = f"data/{name}/{letter_dir}/{split}_{i:04d}"
          path = files_root / (relpath + (".txt" if modality == "dsc" else ".png"))
          path.parent.mkdir(parents=True, exist_ok=True)
          if modality == "dsc":
            path.write_text(_description(CATEGORIES[label], serial), encoding="utf-8")
          else:
            drawers[modality](_OBJECTS[CATEGORIES[label]], serial).save(path)
          lines.append(f"{path.relative_to(files_root).as_posix()} {label}")
      (root / "labels" / f"{name}_{split}.txt").write_text("\n".join(lines) + "\n")
  for split, count in counts["nat"].items():
    lines = []
    for label, line in enumerate(CATEGORY_LINES):
      letter_dir = line.split()[0].lstrip("/")
      for i in range(count):
        relpath = f"{letter_dir}/{i + (0 if split == 'train' else 1000):08d}.jpg"
        path = places / "images256" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        _nat_image(photos, 2000 + 50 * label + i).convert("RGB").save(path, quality=85)
        lines.append(f"{relpath} {label}")
    (places / f"{split}_places205.csv").write_text("\n".join(lines) + "\n")
  return KitFixture(root=root, files_root=files_root, places205=places,
                    categories=CATEGORIES, counts={m: dict(s) for m, s in counts.items()})
