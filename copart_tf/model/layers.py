"""Small building blocks shared by the encoder, heads and decoder (internal).

Sublayers are always stored as named attributes, never in Python lists: with Keras 3 on the
TensorFlow backend, layers held in lists are missing from `tf.train.Checkpoint`'s object graph
(their variables were only saved through the optimizer), so a model restored for inference
silently kept random weights for them. `add_sublayers` / `sublayers` keep the list-like code.
Still so with Keras 3.15 (tests/test_layers.py pins it: when that test fails, delete these two).
"""

import keras


class ConvNormAct(keras.layers.Layer):
  """3x3 conv -> GroupNorm (optional) -> ReLU.

  Stock ops only (cuDNN on a GPU, oneDNN on a CPU, and the same ops in every export):
  `call(x, upsample=True)` repeats pixels (nearest x2) before the conv. Hand-written CPU convs
  (Winograd, matmul filter gradients, upsampling fused into the conv) were deleted in issue 18:
  they did not make the small preset's training step faster (README, "Training speed").

  GroupNorm instead of BatchNorm: parts are folded into the batch for the decoder and the three
  encoder passes share one batch, so batch statistics would mix unrelated maps; GroupNorm also
  behaves identically in training and inference (DESIGN.md §3).

  Args:
    channels: output channels.
    groups: GroupNorm groups (reduced to a divisor of `channels`); 0 = no normalisation.
    strides: conv stride.
    kernel_size: conv kernel size.
  """

  def __init__(self, channels, groups, strides=1, kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.conv = keras.layers.Conv2D(
      channels, kernel_size, strides=strides, padding="same", use_bias=groups <= 0, name="conv"
    )
    self.norm = (
      keras.layers.GroupNormalization(groups=_fit_groups(groups, channels), name="norm")
      if groups > 0
      else None
    )

  def build(self, input_shape):
    self.conv.build(input_shape)
    if self.norm is not None:
      self.norm.build(self.conv.compute_output_shape(input_shape))
    self.built = True

  def call(self, x, upsample=False):
    """Args: x `[N, H, W, C_in]`; upsample: nearest x2 before the conv. Returns `[N, H', W', C]`."""
    if upsample:
      x = keras.ops.repeat(keras.ops.repeat(x, 2, axis=1), 2, axis=2)
    x = self.conv(x)
    if self.norm is not None:
      x = self.norm(x)
    return keras.ops.relu(x)

  def compute_output_shape(self, input_shape):
    return self.conv.compute_output_shape(input_shape)


def conv_norm_act(channels, groups, strides=1, kernel_size=3, name=None):
  """Factory for `ConvNormAct`."""
  return ConvNormAct(channels, groups, strides=strides, kernel_size=kernel_size, name=name)


def add_sublayers(owner, prefix, layers):
  """Stores `layers` as attributes `<prefix>_0, <prefix>_1, ...` of `owner`; returns the names."""
  names = []
  for i, layer in enumerate(layers):
    name = f"{prefix}_{i}"
    setattr(owner, name, layer)
    names.append(name)
  return names


def sublayers(owner, names):
  """The layers stored by `add_sublayers`, in order."""
  return [getattr(owner, name) for name in names]


def _fit_groups(groups, channels):
  """Largest divisor of `channels` not above `groups`."""
  g = min(groups, channels)
  while channels % g:
    g -= 1
  return g
