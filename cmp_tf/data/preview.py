"""A contact sheet of a built dataset, so a person can see the data.

One row per category (per_category rows each), one column per modality; descriptions
are shown as wrapped text.

  python -m cmp_tf.preview_data --data_dir=DIR --out=sheet.png [--split=val]
      [--per_category=1] [--max_categories=N] [--cell=96]
"""

import io
import os

from PIL import Image, ImageDraw, ImageFont

from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.errors import DataError

LABEL_WIDTH = 160  # category names on the left
HEADER_HEIGHT = 22  # modality names on top
TEXT_CELLS = 3  # a description is this many cells wide
MIN_CELL = 32
BACKGROUND = (255, 255, 255)
GRID = (200, 200, 200)
MISSING = (235, 235, 235)
INK = (0, 0, 0)


def sheet_size(num_categories, per_category, cell):
  """(width, height) in pixels of a contact sheet."""
  width = LABEL_WIDTH + cell * (len(mod_lib.IMAGE_MODALITIES) + TEXT_CELLS * len(mod_lib.TEXT_MODALITIES))
  return width, HEADER_HEIGHT + num_categories * per_category * cell


def collect_examples(data_dir, manifest, split, categories, per_category):
  """{modality: {category: [ExampleRecord, ...]}}: the first examples of each category."""
  import tensorflow as tf

  from cmp_tf.data import features

  wanted = set(categories)
  found = {}
  for modality in mod_lib.ALL_MODALITIES:
    if split not in manifest["modalities"].get(modality, {}):
      continue
    per = found.setdefault(modality, {c: [] for c in categories})
    for path in manifest_lib.shard_paths(manifest, data_dir, modality, split):
      read = 0
      try:
        for raw in tf.data.TFRecordDataset(path):
          record = features.from_tf_example(raw)
          read += 1
          if record.category in wanted and len(per[record.category]) < per_category:
            per[record.category].append(record)
          if all(len(v) >= per_category for v in per.values()):
            break
      except tf.errors.OpError as e:
        raise DataError(f"cannot read the shard: {e.message}", path=path, record=read) from None
      if all(len(v) >= per_category for v in per.values()):
        break
  return found


def _font(size):
  return ImageFont.load_default(size=size)


def _wrap(text, font, width, max_lines):
  """Greedy word wrap to `width` pixels; the last kept line ends with an ellipsis if cut."""
  lines, line = [], ""
  for word in text.split():
    trial = f"{line} {word}".strip()
    if font.getlength(trial) <= width or not line:
      line = trial
    else:
      lines.append(line)
      line = word
  if line:
    lines.append(line)
  if len(lines) > max_lines:
    lines = lines[:max_lines]
    last = lines[-1]
    while last and font.getlength(last + " ...") > width:
      last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    lines[-1] = last + " ..."
  return lines


def _image_tile(record, cell):
  image = Image.open(io.BytesIO(record.image_png)).convert("RGB")
  resample = Image.NEAREST if image.size[0] <= cell else Image.LANCZOS
  return image.resize((cell, cell), resample)


def make_contact_sheet(data_dir, split="val", per_category=1, max_categories=None, cell=96):
  """The contact sheet of the dataset in `data_dir` as a PIL image."""
  if split not in mod_lib.SPLITS:
    raise ValueError(f"--split: unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  if per_category < 1:
    raise ValueError(f"--per_category must be at least 1, got {per_category}")
  if max_categories is not None and max_categories < 0:
    raise ValueError(f"--max_categories must be 0 (all) or more, got {max_categories}")
  if cell < MIN_CELL:
    raise ValueError(f"--cell must be at least {MIN_CELL} pixels, got {cell}")
  if not os.path.isfile(manifest_lib.manifest_path(data_dir)):
    raise DataError(f"no {manifest_lib.MANIFEST_NAME} here, so not a built dataset; build one with: "
                    + manifest_lib.BUILD_COMMAND.format(data_dir=data_dir), path=data_dir)
  manifest = manifest_lib.read_manifest(data_dir)
  categories = list(manifest["categories"])
  if max_categories:
    categories = categories[:max_categories]
  found = collect_examples(data_dir, manifest, split, categories, per_category)

  sheet = Image.new("RGB", sheet_size(len(categories), per_category, cell), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  label_font, text_font = _font(13), _font(11)
  columns, x = [], LABEL_WIDTH
  for modality in mod_lib.ALL_MODALITIES:
    width = cell if mod_lib.is_image(modality) else TEXT_CELLS * cell
    columns.append((modality, x, width))
    title = modality.upper() + ("" if modality in found else " (not built)")
    draw.text((x + 4, 4), title, font=label_font, fill=INK)
    x += width
  heldout = set(manifest.get("heldout_categories", []))
  for row_block, category in enumerate(categories):
    top = HEADER_HEIGHT + row_block * per_category * cell
    label = f"{manifest['categories'].index(category)}: {category}"
    for i, line in enumerate(_wrap(label, label_font, LABEL_WIDTH - 8, 3)):
      draw.text((4, top + 4 + 16 * i), line, font=label_font, fill=INK)
    if category in heldout:
      draw.text((4, top + 4 + 16 * 3), "(zero-shot held out)", font=text_font, fill=(120, 120, 120))
    for k in range(per_category):
      y = top + k * cell
      for modality, x, width in columns:
        records = found.get(modality, {}).get(category, [])
        if k >= len(records):
          draw.rectangle([x, y, x + width - 1, y + cell - 1], fill=MISSING)
          continue
        record = records[k]
        if mod_lib.is_image(modality):
          sheet.paste(_image_tile(record, cell), (x, y))
        else:
          max_lines = max(1, (cell - 6) // 13)
          for i, line in enumerate(_wrap(record.text, text_font, width - 8, max_lines)):
            draw.text((x + 4, y + 3 + 13 * i), line, font=text_font, fill=INK)
    draw.line([(0, top), (sheet.size[0], top)], fill=GRID)
  for _, x, _ in columns:
    draw.line([(x, 0), (x, sheet.size[1])], fill=GRID)
  return sheet
