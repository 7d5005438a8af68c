"""DSC: a paragraph written the way CMPlaces' descriptions were, never naming its category.

CMPlaces' writers read the WordNet definition of a scene and wrote what came to mind,
asked not to name it: what the place is for, what one does there, who is there, what one
hears and feels, when one goes, in the first or second person, in paragraphs of varied
length, with the odd garbled sentence (the paper's Fig. 5). So a paragraph mixes story
sentences (the category's story in scene_stories.json, and the pools it shares with its
settings and kind) with sparser object sentences (templates filled with object synonyms,
colour and size adjectives, counts and spatial relations computed from the scene's boxes),
generic distractors and some noise (a dropped, doubled or swapped word, a typo, a missing
capital). Synonyms that name the category are never used, and any sentence that still
would is dropped.
"""

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MIN_SENTENCES, MAX_SENTENCES = 2, 9
NARRATORS = ("first", "second", "impersonal")
# A story phrase comes from the category's own pool with this probability when it has one,
# else from the pools it shares with related categories. 0.1, with at most 2 object sentences
# and 3 distractors, puts the linear probe on DSC (41 %) in the band of the image
# modalities (26-43 %) rather than far above it (64 % with object sentences only).
OWN_STORY_P = 0.1
NOISE_P = 0.2  # chance that a sentence is garbled
MAX_STORY_SENTENCES, MAX_THING_SENTENCES, MAX_DISTRACTORS = 4, 2, 3

# Story sentence templates per narrator and field; {} is the phrase.
STORY_TEMPLATES = {
    "first": {
        "purpose": ("I went there to {}.", "It is the kind of place where you {}.",
                    "I think people come here to {}."),
        "activities": ("I like to {} here.", "I used to {} there.", "We would {} there.",
                       "Last time I was there I wanted to {}."),
        "people": ("I saw {} there.", "I remember {} nearby.", "I noticed {}."),
        "sounds": ("I could hear {}.", "All I heard was {}.", "I remember the sound of {}."),
        "feelings": ("It felt {}.", "I remember it being {}.", "To me it seemed {}."),
        "times": ("I was there {}.", "I had gone there {}.", "I usually go {}."),
        "weather": ("It was {}.", "I remember it was {}."),
    },
    "second": {
        "purpose": ("You come here to {}.", "This is where you {}.", "You would go there to {}."),
        "activities": ("You can {} here.", "You might {} here.", "If you like, you can {}."),
        "people": ("You would see {} around.", "You might meet {}.", "Around you are {}."),
        "sounds": ("You can hear {}.", "You would hear {}.", "You notice the sound of {}."),
        "feelings": ("It feels {}.", "You would find it {}.", "You can tell it is {}."),
        "times": ("You would go {}.", "It is best {}.", "Imagine being there {}."),
        "weather": ("It is {}.", "Imagine it is {}."),
    },
    "impersonal": {
        "purpose": ("It is a place to {}.", "People go there to {}.", "A place meant to {}."),
        "activities": ("People {} here.", "Someone could {} here.", "Here one can {}."),
        "people": ("Nearby are {}.", "There are {} around.", "One can see {}."),
        "sounds": ("There is the sound of {}.", "The sound of {} fills the air.", "{} can be heard."),
        "feelings": ("The place is {}.", "It looks {}.", "It all seems {}."),
        "times": ("The picture is from {}.", "It is {}.", "This was {}."),
        "weather": ("It is {}.", "The day is {}."),
    },
}


def is_plural(word, irregular, mass=frozenset()):
  """Whether a noun is already plural ("walls", "road markings"); mass nouns are not."""
  last = word.rpartition(" ")[2]
  if word in mass or last in irregular:
    return False
  if last in irregular.values():
    return True
  return last.endswith("s") and not last.endswith(("ss", "us"))


def plural(word, irregular, mass=frozenset()):
  """English plural of a (possibly multi-word) noun; mass nouns stay as they are."""
  if word in irregular:
    return irregular[word]
  if word in mass or is_plural(word, irregular, mass):
    return word
  head, _, last = word.rpartition(" ")
  if last in irregular:
    pl = irregular[last]
  elif last.endswith(("s", "x", "ch", "sh")):
    pl = last + "es"
  elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
    pl = last[:-1] + "ies"
  else:
    pl = last + "s"
  return f"{head} {pl}" if head else pl


def article(phrase):
  return "an" if phrase[:1].lower() in "aeiou" else "a"


def _cap(sentence):
  return sentence[:1].upper() + sentence[1:]


class _Writer:
  """Holds the scene, the draws and the category's banned words while writing one paragraph."""

  def __init__(self, scene, grammar, draws):
    self.scene = scene
    self.grammar = grammar
    self.draws = draws
    self.banned = grammar.category(scene.category).banned
    self.irregular = grammar.irregular_plurals
    self.mass = grammar.mass_nouns
    self.mentioned = []

  # --- random helpers ---

  def choice(self, options):
    return self.draws.choice(options)

  def random(self):
    return self.draws.random()

  def shuffled(self, items, weights=None):
    """`items` in random order; heavier ones tend to come first (weighted, no replacement)."""
    weights = weights or [1.0] * len(items)
    keys = [self.random() ** (1.0 / w) for w in weights]
    return [item for _, item in sorted(zip(keys, items), key=lambda kv: -kv[0])]

  # --- phrases ---

  def noun(self, obj):
    return self.choice([w for w in obj.words if not self.banned.search(w)])

  def noun_phrase(self, obj, noun, definite=False, adjectives=True):
    """"a small red car", "the car", "some white stripes"."""
    words = []
    if adjectives:
      if obj.size > 1.25 and self.random() < 0.6:
        words.append(self.choice(("large", "big", "tall") if obj.box[2] - obj.box[0] > 0.2
                                 else ("large", "big")))
      elif obj.size < 0.75 and self.random() < 0.6:
        words.append(self.choice(("small", "little", "tiny")))
      color = self.random() < 0.55
      if color and not obj.color_after:
        words.append(obj.color)
      if color and obj.color_after:
        noun = f"{noun} {obj.color_after} {obj.color}"
    phrase = " ".join(words + [noun])
    if definite:
      return f"the {phrase}"
    if noun in self.mass or is_plural(noun, self.irregular, self.mass):
      return f"some {phrase}"
    return f"{article(phrase)} {phrase}"

  def location(self, obj):
    cy, cx = obj.center
    if cx < 0.33:
      options = ["on the left", "on the left side"]
    elif cx > 0.67:
      options = ["on the right", "on the right side"]
    else:
      options = ["in the middle", "in the center"]
    if cy < 0.3:
      options += ["at the top", "up high"]
    elif cy > 0.75:
      options += ["in the foreground", "at the bottom"]
    return self.choice(options)

  def band_relation(self, obj, band):
    """How a thing stands to a background band ("on the floor"), or None if it does not."""
    top, bottom = band.box[0], band.box[2]
    y0, y1 = obj.box[0], obj.box[2]
    if band.name == "sky":  # only things that float: clouds, birds, the sun
      return self.choice(("in", "up in")) if y1 < bottom - 0.05 else None
    if band.name == "ceiling":
      return "hanging from" if y0 <= bottom + 0.02 else None
    if band.name == "wall":
      if y1 < bottom - 0.02:
        return self.choice(("on", "hanging on"))
      return "against" if y1 <= bottom + 0.1 else None
    if band.parts and band.parts[0].texture == "waves":
      if top + 0.06 < y1 <= bottom + 0.01:
        return self.choice(("in", "on"))
      return self.choice(("beyond", "across")) if top - 0.02 <= y1 <= top + 0.06 else None
    return "on" if top - 0.01 <= y1 <= bottom + 0.01 else None  # floor, grass, sand ...

  def relation(self, obj, ref):
    """How `obj` stands to `ref`, as a phrase that goes before "the <ref>"."""
    if ref.stuff:
      return self.band_relation(obj, ref)
    if obj.support == ref.uid:
      if obj.relation == "on":
        return self.choice(("on", "on top of"))
      waves = ref.parts and ref.parts[0].texture == "waves"
      return "in" if waves else self.choice(("on", "in the middle of"))
    (ay, ax), (by, bx) = obj.center, ref.center
    dx, dy = ax - bx, ay - by
    overlap = min(obj.box[3], ref.box[3]) - max(obj.box[1], ref.box[1]) > 0
    if abs(dx) >= abs(dy) and abs(dx) > 0.1:
      side = "left" if dx < 0 else "right"
      return self.choice((f"to the {side} of", f"on the {side} side of", f"{side} of"))
    if overlap and abs(obj.box[2] - ref.box[2]) > 0.08:
      return "in front of" if obj.box[2] > ref.box[2] else "behind"
    if abs(dy) > 0.1:
      return self.choice(("above", "over")) if dy < 0 else self.choice(("below", "under", "beneath"))
    return self.choice(("next to", "beside", "near"))

  # --- sentences ---

  def reference(self, obj, others):
    """(reference object, relation phrase) for `obj`, or (None, None)."""
    if obj.support is not None:
      ref = self.scene.by_uid(obj.support)
      return ref, self.relation(obj, ref)
    if not others or self.random() >= 0.6:
      return None, None
    for ref in self.shuffled(others):
      rel = self.relation(obj, ref)
      if rel is not None:
        return ref, rel
    return None, None

  def thing_sentence(self, group, others):
    """One sentence about a group of same-name things (possibly with a reference object)."""
    obj = self.choice(group)
    noun = self.noun(obj)
    ref, rel = self.reference(obj, others)
    ref_phrase = ""
    if ref is not None:
      self.mentioned.append(ref)
      ref_phrase = self.noun_phrase(ref, self.noun(ref), definite=True, adjectives=False)
    if len(group) >= 2 and self.random() < 0.5:
      count = NUMBERS[len(group)] if len(group) < len(NUMBERS) else "many"
      nouns = plural(noun, self.irregular, self.mass)
      if ref is not None:
        return self.choice((f"There are {count} {nouns} {rel} {ref_phrase}.",
                            f"{_cap(count)} {nouns} stand {rel} {ref_phrase}."))
      return self.choice((f"There are {count} {nouns} {self.location(obj)}.",
                          f"I can see {count} {nouns}."))
    many = is_plural(noun, self.irregular, self.mass)
    be, stand, there = ("are", "stand", "There are") if many else ("is", "stands", "There is")
    phrase = self.noun_phrase(obj, noun)
    if ref is not None:
      return self.choice((f"{_cap(phrase)} {be} {rel} {ref_phrase}.",
                          f"I can see {phrase} {rel} {ref_phrase}.",
                          f"{_cap(rel)} {ref_phrase} {there.lower()} {phrase}.",
                          f"{there} {phrase} {rel} {ref_phrase}."))
    if self.random() < 0.25:
      if obj.color_after:
        return f"The {noun} {be} dressed {obj.color_after} {obj.color}."
      return f"The {noun} {be} {obj.color}."
    return self.choice((f"{there} {phrase} {self.location(obj)}.",
                        f"You can notice {phrase} {self.location(obj)}.",
                        f"{_cap(phrase)} {stand} {self.location(obj)}.",
                        f"I see {phrase}."))

  def band_sentence(self, band):
    noun = self.noun(band)
    many = is_plural(noun, self.irregular, self.mass)
    be, look = ("are", "look") if many else ("is", "looks")
    if band.name == "wall":
      return self.choice((f"The {noun} {be} painted {band.color}.", f"The {noun} {be} {band.color}."))
    return self.choice((f"The {noun} {be} {band.color}.", f"The {noun} {look} {band.color}."))

  def story_sentence(self, narrator, story, fields):
    """One sentence of what the place is for, who is there, how it sounds and feels ..."""
    field = self.choice(fields)
    own, shared = story.own.get(field, ()), story.shared.get(field, ())
    pool = own if own and (not shared or self.random() < OWN_STORY_P) else shared
    phrase = self.choice(pool)
    return _cap(self.choice(STORY_TEMPLATES[narrator][field]).format(phrase))

  def garble(self, sentence):
    """The sentence as typed in a hurry: one word dropped, doubled or swapped, a typo, or
    no capital and no full stop."""
    words = sentence.split()
    kind = self.draws.index(5)
    if len(words) < 3 or kind == 4:
      return sentence[:1].lower() + sentence[1:].rstrip(".")
    i = self.draws.index(len(words) - 1)
    if kind == 0:
      del words[i]
    elif kind == 1:
      words.insert(i, words[i])
    elif kind == 2:
      words[i], words[i + 1] = words[i + 1], words[i]
    else:
      word = words[i]
      if len(word) >= 4:
        j = self.draws.index(len(word) - 2)
        words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    text = " ".join(words)
    return text if text.endswith((".", "!", "?")) else text + "."

  def write(self):
    """(paragraph, mentioned objects)."""
    things = [o for o in self.scene.objects if not o.stuff]
    bands = [o for o in self.scene.objects if o.stuff  # the sky of "sky" goes unsaid
             and any(not self.banned.search(w) for w in o.words)]
    groups = {}
    for obj in things:
      groups.setdefault(obj.name, []).append(obj)
    weights = [sum((o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for o in group) ** 0.5 + 0.05
               for group in groups.values()]
    names = self.shuffled(list(groups), weights)
    story = self.grammar.category(self.scene.category).story
    fields = story.fields()
    narrator = self.choice(NARRATORS)
    n_story = self.draws.integer(1, MAX_STORY_SENTENCES) if fields else 0
    n_things = min(len(names), self.draws.integer(0 if n_story else 1, MAX_THING_SENTENCES))
    n_bands = int(self.random() < 0.3) if bands else 0
    if n_story + n_things + n_bands == 0:
      n_bands = 1
    n_distract = self.draws.integer(0, MAX_DISTRACTORS)
    n_distract = max(n_distract, MIN_SENTENCES - n_story - n_things - n_bands)
    n_distract = min(n_distract, MAX_SENTENCES - n_story - n_things - n_bands)
    sentences = []
    for name in names[:n_things]:
      others = [o for o in things if o.name != name] + bands
      sentences.append(self.thing_sentence(groups[name], others))
      self.mentioned.extend(groups[name])
    for _ in range(n_bands):
      band = self.choice(bands)
      sentences.append(self.band_sentence(band))
      self.mentioned.append(band)
    for i in range(n_story):
      sentence = self.story_sentence(narrator, story, fields)
      # the writers often open with what the place is, when and why they went
      at = 0 if i == 0 and self.random() < 0.6 else self.draws.integer(0, len(sentences))
      sentences.insert(at, sentence)
    distractors = list(self.grammar.distractors)
    for sentence in self.shuffled(distractors)[:n_distract]:
      sentences.insert(self.draws.integer(0, len(sentences)), sentence)
    sentences = [self.garble(s) if self.random() < NOISE_P else s for s in sentences]
    kept = [s for s in sentences if not self.banned.search(s)]
    spare = [d for d in self.shuffled(distractors) if d not in kept]
    while len(kept) < MIN_SENTENCES:
      kept.append(spare.pop())
    seen, unique = set(), []
    for obj in self.mentioned:
      if obj.uid not in seen:
        seen.add(obj.uid)
        unique.append(obj)
    return " ".join(kept), unique


def describe(scene, grammar, draws):
  """(paragraph text, list of the scene objects it mentions)."""
  return _Writer(scene, grammar, draws).write()
