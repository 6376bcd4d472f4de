"""Part-map head: encoder features -> K+1 latent part maps V_k."""

import keras
import tensorflow as tf

from copart_tf.model import layers as layers_lib
from copart_tf.model.presets import get_preset


class PartMapHead(keras.layers.Layer):
  """Encoder features `[B, h, w, C]` -> latent part maps `[B, h, w, K+1, C_lat]` (index 0 = background).

  All parts come from one conv stack, as in the reference. Kept separate from the transform head
  so the target and warped-target passes, which need only T, skip it (DESIGN.md §4).

  Example:
  >>> head = PartMapHead(num_parts=4, preset="tiny")
  >>> head(tf.zeros([2, 16, 16, 16])).shape
  TensorShape([2, 16, 16, 5, 4])
  """

  def __init__(self, num_parts, preset="small", **kwargs):
    super().__init__(**kwargs)
    self.num_parts = num_parts
    self.preset = get_preset(preset)
    p = self.preset
    self.hidden = (
      layers_lib.conv_norm_act(p.part_map_channels, p.groups, name="hidden")
      if p.part_map_channels > 0
      else None
    )
    # float32 latent maps under a mixed precision policy too: the warp samples them at positions
    # computed in their dtype (bfloat16 would round positions to ~1/8 pixel).
    self.out = keras.layers.Conv2D(
      (num_parts + 1) * p.latent_channels, 3, padding="same", name="out", dtype="float32"
    )

  def build(self, input_shape):
    shape = tuple(input_shape)
    if self.hidden is not None:
      self.hidden.build(shape)
      shape = self.hidden.compute_output_shape(shape)
    self.out.build(shape)
    self.built = True

  def call(self, features):
    x = features
    if self.hidden is not None:
      x = self.hidden(x)
    x = self.out(x)
    shape = tf.shape(x)
    return tf.reshape(
      x, [shape[0], shape[1], shape[2], self.num_parts + 1, self.preset.latent_channels]
    )
