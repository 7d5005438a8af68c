"""The five CMPlaces modalities and how their names are spelled everywhere.

Canonical names are lower case (they name directories, dict keys and layers);
users may type them in any case.
"""

NAT = "nat"  # natural images
CLP = "clp"  # clip art
SPT = "spt"  # spatial text
LDR = "ldr"  # line drawings
DSC = "dsc"  # text descriptions

ALL_MODALITIES = (NAT, CLP, SPT, LDR, DSC)
IMAGE_MODALITIES = (NAT, CLP, SPT, LDR)
TEXT_MODALITIES = (DSC,)

# One colour per modality in every figure (matplotlib's tab10 order).
COLOURS = {NAT: "#1f77b4", CLP: "#ff7f0e", SPT: "#2ca02c", LDR: "#d62728", DSC: "#9467bd"}

SPLITS = ("train", "dev", "val")  # dev: carved out of train for model selection


def is_image(modality):
  return modality in IMAGE_MODALITIES


def parse_modality(name, where="modality"):
  """Returns the canonical name of `name`; `where` names the flag or file in errors."""
  canonical = str(name).strip().lower()
  if canonical not in ALL_MODALITIES:
    raise ValueError(
        f"{where}: unknown modality {name!r}; expected one of "
        f"{', '.join(m.upper() for m in ALL_MODALITIES)}")
  return canonical


def parse_modalities(names, where="modalities"):
  """Parses a list (or comma-separated string) of modality names, keeping order."""
  if isinstance(names, str):
    names = [n for n in names.split(",") if n.strip()]
  parsed = [parse_modality(n, where) for n in names]
  if not parsed:
    raise ValueError(f"{where}: no modality given")
  if len(set(parsed)) != len(parsed):
    raise ValueError(f"{where}: a modality is listed twice in {names!r}")
  return tuple(parsed)
