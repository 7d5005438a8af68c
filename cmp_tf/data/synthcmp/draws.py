"""Fast scalar random draws from a NumPy Generator.

Scene sampling makes hundreds of scalar draws; a Generator method call costs microseconds
each, so uniforms are taken from a buffer filled in batches. The sequence depends only on
the Generator's state, so results stay deterministic.
"""

BATCH = 256


class Draws:
  """Scalar uniforms from `rng` in batches; `rng` stays usable for array draws."""

  def __init__(self, rng):
    self.rng = rng
    self._buffer = []
    self._next = 0

  def random(self):
    if self._next == len(self._buffer):
      self._buffer = self.rng.random(BATCH).tolist()
      self._next = 0
    value = self._buffer[self._next]
    self._next += 1
    return value

  def uniform(self, low, high):
    return low + (high - low) * self.random()

  def index(self, n):
    return min(int(self.random() * n), n - 1)

  def choice(self, options):
    return options[self.index(len(options))]

  def integer(self, low, high):
    """An integer in [low, high], both included."""
    return low + self.index(high - low + 1)
