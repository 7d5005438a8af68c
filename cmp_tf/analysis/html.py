"""The analysis page's sections (the page itself: `cmp_tf.html_page`)."""

from cmp_tf.html_page import Section, figure, paragraph, table, text


def invariance_section(result):
  """t-SNE pictures and the modality probe per layer."""
  probes = result["probe"]
  layers = result["probe_layers"]
  chance = probes[layers[0]]["chance"] if layers else None
  rows = [[layer, probes[layer]["accuracy"], probes[layer]["std"], probes[layer]["chance"]]
          for layer in layers]
  examples = ", ".join(f"{m.upper()} {n}" for m, n in result["examples"].items())
  body = [paragraph(f"Linear probe (logistic regression, {result['protocol']['folds']}-fold "
                    "stratified cross-validation) predicting the modality from each layer's "
                    "L2-normalised features. Lower accuracy = more modality-invariant; "
                    f"chance {chance:.3f}." if chance is not None else ""),
          table(["layer", "probe accuracy", "std over folds", "chance"], rows),
          paragraph(f"t-SNE of {result['tsne_layer']} (validation examples: {examples})."),
          figure(result["pictures"]["modality"], "coloured by modality", width=560),
          figure(result["pictures"]["category"], "coloured by category", width=560)]
  return Section("Modality invariance (Figure 7)", "\n".join(body),
                 tuple(result["pictures"].values()))


def alignment_section(result, top_objects=10):
  """Aligned-unit fraction per layer (plain and within categories) and the objects that
  aligned units detect."""
  others = [m.upper() for m in result["modalities"] if m != result["reference"]]
  rule = (f"A unit is aligned when one object is its best detector (ROC AUC of the unit's "
          f"activation for the object's presence) with AUC >= {result['threshold']} in "
          f"{result['reference'].upper()} and in at least {result['min_other_modalities']} of "
          f"{', '.join(others)}. Objects in fewer than {result['min_positives']} examples (or "
          f"missing from fewer than {result['min_negatives']}) of a modality are skipped "
          "there. Within categories: the same rule with AUCs over pairs of examples of one "
          "scene category, so that objects which merely come with a category (snow, sand) "
          "do not count. Chance: the same scores with each modality's object lists "
          "shuffled among its examples (within categories for the second).")
  body = [paragraph(rule)]
  if result.get("modalities_without_objects"):
    body.append(paragraph("Without ground-truth objects (left out): " + ", ".join(
        m.upper() for m in result["modalities_without_objects"]), note=True))
  modalities = result["modalities"]
  rows = []
  for layer, entry in result["layers"].items():
    within = entry.get("within_category") or {}
    rows.append([layer, entry["num_units"], entry["num_aligned"], entry["fraction"],
                 entry["chance_fraction"], within.get("num_aligned"), within.get("fraction"),
                 within.get("chance_fraction")]
                + [entry["detector_fraction"][m] for m in modalities])
  body.append(table(["layer", "units", "aligned", "aligned fraction", "chance",
                     "aligned within categories", "fraction", "chance"]
                    + [f"detector share {m.upper()}" for m in modalities], rows))
  body.append(paragraph("Detector share: the share of units whose best detector in that "
                        "modality reaches the AUC threshold (plain AUC).", note=True))
  for layer, entry in result["layers"].items():
    for label, part in (("", entry), (" within categories", entry.get("within_category"))):
      objects = list((part or {}).get("detected_objects", {}).items())[:top_objects]
      if objects:
        body.append(f"<h3>{text(layer)}: objects detected by aligned units{label}</h3>")
        body.append(table(["object", "aligned units"], objects))
  return Section("Unit alignment (objective version of the human study)", "\n".join(body))


def units_section(result):
  """The unit grids written by cmp_tf.analysis.units."""
  body, images = [], []
  if result.get("selection"):
    body.append(paragraph(f"Units: {result['selection']}. Activation: {result['activation']}. "
                          f"Mask: {result.get('mask', '')}. DSC words: "
                          f"{result.get('dsc_words', '')}.", note=True))
  for layer, entry in result["layers"].items():
    body.append(f"<h3>{text(layer)} ({entry.get('num_live', '?')} of {entry['num_units']} "
                "units live)</h3>")
    for unit in entry["units"]:
      body.append(figure(unit["png"], f"{layer} unit {unit['unit']}", width=380))
      images.append(unit["png"])
  return Section("Unit visualisations (Figures 2, 6)", "\n".join(body), tuple(images))


def inversion_section(result):
  """The cross-modal reconstruction grid of cmp_tf.analysis.inversion and its decoders."""
  size = result.get("image_size")
  body = [paragraph(f"One decoder per output modality maps pool5 to a {size}x{size} image, "
                    "trained on that modality's own training pairs; rows are validation "
                    "examples of each input modality, columns the input and each decoder's "
                    "reconstruction. Unpaired data has no cross-modal target, so the "
                    "numbers are each decoder's MSE on its own validation set beside that of "
                    "always predicting its mean training image.")]
  rows = [[m.upper(), d.get("train_examples"), d.get("steps"), d.get("val_mse"),
           d.get("val_mse_mean_image")] for m, d in result.get("decoders", {}).items()]
  body.append(table(["decoder", "training pairs", "steps", "val MSE", "mean-image MSE"], rows))
  body.append(figure(result["png"], "pool5 inverted by each modality's decoder"))
  return Section("Feature inversion (Figure 8)", "\n".join(body), (result["png"],))
