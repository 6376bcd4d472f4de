"""Small building blocks shared by the encoder, heads and decoder (internal)."""

import keras


def conv_norm_act(channels, groups, strides=1, kernel_size=3, name=None):
  """3x3 conv -> GroupNorm -> ReLU as one `keras.Sequential`.

  GroupNorm instead of BatchNorm: parts are folded into the batch for the decoder and the three
  encoder passes share one batch, so batch statistics would mix unrelated maps; GroupNorm also
  behaves identically in training and inference (DESIGN.md §3).
  """
  layers = [
    keras.layers.Conv2D(
      channels, kernel_size, strides=strides, padding="same", use_bias=groups <= 0
    )
  ]
  if groups > 0:
    layers.append(keras.layers.GroupNormalization(groups=_fit_groups(groups, channels)))
  layers.append(keras.layers.ReLU())
  return keras.Sequential(layers, name=name)


def _fit_groups(groups, channels):
  """Largest divisor of `channels` not above `groups`."""
  g = min(groups, channels)
  while channels % g:
    g -= 1
  return g
