"""The encoder trunk: a stem that downsamples by 4 followed by an hourglass (U-Net)."""

import keras
import tensorflow as tf

from copart_tf.model import layers as layers_lib
from copart_tf.model.presets import get_preset


class Encoder(keras.layers.Layer):
  """Image -> shared features at H/4 x W/4, consumed by the part-map and transform heads.

  The stem's first conv runs at full resolution and each following conv halves it; the hourglass
  halves the resolution once per entry of `preset.hourglass_channels` and comes back with skip
  connections (FOMM-style hourglass).

  Example:
  >>> encoder = Encoder("tiny")
  >>> encoder(tf.zeros([2, 64, 64, 3])).shape
  TensorShape([2, 16, 16, 16])

  Args:
    preset: a `Preset` or its name.
  """

  def __init__(self, preset="small", **kwargs):
    super().__init__(**kwargs)
    self.preset = get_preset(preset)
    p = self.preset
    # No normalisation in the two high-resolution stem convs: GroupNorm there costs more than the
    # convs themselves on CPU (measured: 2.4x the encoder's training time) and buys little.
    # No normalisation in the two high-resolution stem convs: GroupNorm there costs more than the
    # convs themselves on CPU (measured: 2.4x the encoder's training time) and buys little.
    stem = [
      layers_lib.conv_norm_act(
        c, p.groups if i == 2 else 0, strides=1 if i == 0 else 2, name=f"stem_{i}"
      )
      for i, c in enumerate(p.stem_channels)
    ]
    if len(p.stem_channels) != 3:
      raise ValueError("the stem must have 3 convs (full, /2, /4 resolution)")
    self._stem_names = layers_lib.add_sublayers(self, "stem", stem)
    self._down_names = []
    for i, c in enumerate(p.hourglass_channels):
      block = [layers_lib.conv_norm_act(c, p.groups, strides=2, name=f"down_{i}_0")]
      block += [
        layers_lib.conv_norm_act(c, p.groups, name=f"down_{i}_{j}")
        for j in range(1, p.convs_per_block)
      ]
      self._down_names.append(layers_lib.add_sublayers(self, f"down_{i}", block))
    # Up path: level i brings the resolution of down block i back to that of its input.
    skip_channels = (p.stem_channels[-1],) + tuple(p.hourglass_channels[:-1])
    self._up_names = []
    for i in reversed(range(len(p.hourglass_channels))):
      c = skip_channels[i]
      block = [
        layers_lib.conv_norm_act(c, p.groups, name=f"up_{i}_{j}") for j in range(p.convs_per_block)
      ]
      self._up_names.append(layers_lib.add_sublayers(self, f"up_{i}", block))
    self.upsample = keras.layers.UpSampling2D(2, interpolation="bilinear")

  @property
  def stem(self):
    return layers_lib.sublayers(self, self._stem_names)

  @property
  def down_blocks(self):
    return [layers_lib.sublayers(self, names) for names in self._down_names]

  @property
  def up_blocks(self):
    return [layers_lib.sublayers(self, names) for names in self._up_names]

  @property
  def output_channels(self):
    return self.preset.stem_channels[-1]

  def build(self, input_shape):
    shape = tuple(input_shape)
    for layer in self.stem:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    skips = [shape]
    for block in self.down_blocks:
      for layer in block:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
      skips.append(shape)
    skips.pop()
    for block in self.up_blocks:
      skip = skips.pop()
      shape = skip[:-1] + (shape[-1] + skip[-1],)
      for layer in block:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    # Stateless, but model.fit under a tf.distribute strategy insists every layer be built.
    self.upsample.build(shape)
    self.built = True

  def call(self, images):
    """Args: images `[B, H, W, 3]` in [0, 1]. Returns features `[B, H/4, W/4, C]`."""
    x = images * 2.0 - 1.0
    for layer in self.stem:
      x = layer(x)
    skips = [x]
    for block in self.down_blocks:
      for layer in block:
        x = layer(x)
      skips.append(x)
    skips.pop()
    for block in self.up_blocks:
      x = tf.concat([self.upsample(x), skips.pop()], axis=-1)
      for layer in block:
        x = layer(x)
    return x

  def compute_output_shape(self, input_shape):
    b, h, w, _ = input_shape
    return (b, None if h is None else h // 4, None if w is None else w // 4, self.output_channels)
