"""The image-branch architectures, chosen by name.

  alexnet        Krizhevsky's AlexNet as in Places-CNN (groups dropped) at 227x227:
                 pool5 6x6x256 = 9216, fc6/fc7 4096. For real data on a GPU.
  alexnet_small  The CPU default at 64x64: AlexNet's five convs and three max-pools
                 with a quarter of its channels (24, 64, 96, 96, 64) and kernels
                 (5x5 for conv1/conv2, 3x3 after), conv1 at stride 2 rather than 4 so
                 that small objects survive, "same" padding: pool5 4x4x64 = 1024,
                 fc6/fc7 512. No LRN: TensorFlow's CPU LRN (forward + backward) cost
                 ~40% of a training step here, and later AlexNet-style networks
                 dropped it for lack of effect.
  alexnet_tiny   A few thousand weights per layer at 32x32, for tests and smoke runs
                 (with LRN, so that tests exercise every layer type).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Conv:
  filters: int
  kernel: int
  stride: int = 1
  padding: str = "same"


@dataclasses.dataclass(frozen=True)
class ImageVariant:
  """conv1..conv5; max-pooling after conv1, conv2 and conv5; LRN after conv1 and conv2."""
  name: str
  image_size: int  # the resolution the variant is designed for
  convs: tuple  # five Conv
  pool_size: int
  pool_stride: int
  pool_padding: str
  lrn: bool
  fc_units: int

  def pool5_shape(self, image_size):
    """(height, width, channels) of pool5 for square inputs of `image_size`."""
    size = int(image_size)
    trace = [f"input {size}"]
    for index, conv in enumerate(self.convs, start=1):
      size = _output_size(size, conv.kernel, conv.stride, conv.padding)
      trace.append(f"conv{index} {size}")
      if index in POOLED_CONVS:
        size = _output_size(size, self.pool_size, self.pool_stride, self.pool_padding)
        trace.append(f"pool{index} {size}")
      if size < 1:
        raise ValueError(
            f"image variant {self.name!r} cannot take {image_size}x{image_size} images: "
            f"the feature map vanishes ({', '.join(trace)}); it is designed for "
            f"{self.image_size}x{self.image_size}")
    return (size, size, self.convs[-1].filters)

  def pool5_size(self, image_size):
    height, width, channels = self.pool5_shape(image_size)
    return height * width * channels


POOLED_CONVS = (1, 2, 5)
LRN_CONVS = (1, 2)


def _output_size(size, kernel, stride, padding):
  if padding == "same":
    return -(-size // stride)
  return (size - kernel) // stride + 1


VARIANTS = {
    "alexnet": ImageVariant(
        name="alexnet", image_size=227,
        convs=(Conv(96, 11, 4, "valid"), Conv(256, 5), Conv(384, 3), Conv(384, 3),
               Conv(256, 3)),
        pool_size=3, pool_stride=2, pool_padding="valid", lrn=True, fc_units=4096),
    "alexnet_small": ImageVariant(
        name="alexnet_small", image_size=64,
        convs=(Conv(24, 5, 2), Conv(64, 5), Conv(96, 3), Conv(96, 3), Conv(64, 3)),
        pool_size=3, pool_stride=2, pool_padding="same", lrn=False, fc_units=512),
    "alexnet_tiny": ImageVariant(
        name="alexnet_tiny", image_size=32,
        convs=(Conv(8, 3, 2), Conv(16, 3), Conv(16, 3), Conv(16, 3), Conv(16, 3)),
        pool_size=3, pool_stride=2, pool_padding="same", lrn=True, fc_units=32),
}


def get_variant(name, where="image_variant"):
  """The ImageVariant called `name`; `where` names the flag or field in errors."""
  try:
    return VARIANTS[str(name).strip().lower()]
  except KeyError:
    raise ValueError(
        f"{where}: unknown image variant {name!r}; expected one of "
        f"{', '.join(sorted(VARIANTS))}") from None
