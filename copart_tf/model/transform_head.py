"""Transform head: encoder features -> one affine pose T_k per foreground part."""

import keras
import numpy as np
import tensorflow as tf

from copart_tf.model import layers as layers_lib
from copart_tf.model.presets import get_preset
from copart_tf.ops import affine as affine_lib
from copart_tf.ops import grid as grid_lib


def sunflower(num_points, radius):
  """`num_points` (x, y) spread evenly over a disc of `radius` (golden-angle spiral), `[K, 2]`.

  Why spread the initial part centres: with every T_k starting at the identity, the K parts are
  interchangeable, and the translation loss pulls every mask towards the same centre. Nothing but
  tiny random differences separates them, and on the synthetic humanoid the masks stayed uniform
  (each part 1/(K+1) everywhere, concentration loss flat) for 300+ steps. Distinct initial
  centres give each part its own place to start from; training moves them freely.
  """
  i = np.arange(num_points, dtype=np.float64)
  r = radius * np.sqrt((i + 0.5) / max(num_points, 1))
  theta = i * np.pi * (3.0 - np.sqrt(5.0))
  return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1).astype(np.float32)


# The scales a pose can take, per `scale_activation`: "tanh" = 0.9 tanh(z) + 1, the reference's
# range; "log" = a sigmoid over the log of the range (`_log_scale`).
SCALE_RANGES = {"tanh": (0.1, 1.9), "log": (0.02, 1.9)}

# The heatmap-read linear part's output is this times its conv's: a 10x smaller step for Adam.
# Why: one Adam step moves every tap of the 3x3 conv by ~lr in the same direction, which moved
# the scale pre-activations of the unnormalised features by ~1 per step, past the true scales
# into the floor of the range (supervised check, lr 1e-3: every scale at the floor; at lr 1e-4
# the sizes and orientations were learned).
LINEAR_MAP_GAIN = 0.1


def _log_scale(z):
  """Scale exp(log 0.02 + (log 1.9 - log 0.02) sigmoid(z)): about the same relative gradient
  d(log scale)/dz ~ 1 from 0.05 to 0.8, and a gradient everywhere (a clipped exp(z) trapped every
  part at its floor)."""
  low, high = np.log(SCALE_RANGES["log"])
  return tf.exp(low + (high - low) * tf.sigmoid(z))


def _log_scale_inverse(scale):
  low, high = np.log(SCALE_RANGES["log"])
  fraction = (np.log(scale) - low) / (high - low)
  return float(np.log(fraction / (1.0 - fraction)))


class TransformHead(keras.layers.Layer):
  """Features `[B, h, w, C]` -> poses T_k = [R(theta) diag(sx, sy) | t] `[B, K, 2, 3]`.

  Strided convs -> flatten -> hidden dense -> three linear heads per part (DESIGN.md §3):
  - rotation (c, s): bias initialised to (1, 0), normalised to unit length;
  - scale: pre-activation z, scale = 0.9 tanh(z) + 1 in (0.1, 1.9), starting at `initial_scale`;
  - shift: zero kernel, no activation (the part centre in normalised image coordinates); its bias
    is zero as in the reference, or, with `initial_spread` > 0, the K points of a sunflower
    (Fibonacci) disc of that radius, so the parts start at distinct places (see `sunflower`).
    With `shift_from="heatmap"` the centre is instead the expected position under a softmax
    heatmap per part (a 3x3 conv on the features, softmax over the feature grid, one grid of
    `copart_tf.ops.grid`); `initial_spread` then places a trainable Gaussian bump per part on
    the heatmap logits instead.
  - `linear_from="heatmap"` (needs `shift_from="heatmap"`): rotation and scale are not
    regressed from the flattened features but read where the part is: a 3x3 conv gives every
    feature cell the four pre-activations (c, s, z_x, z_y) of every part, and each part takes
    their expectation under its own heatmap (the convention of FOMM's local Jacobians,
    Siarohin et al. 2019). Why: from flattened features a dense layer must learn where each
    part is before it can say how that thing is turned; on rung A it learned no covariance even
    when supervised with the true poses (benchmarks/pose_oracles.py --checks=supervised:
    covariance L1 0.0035 against 0.0036 for the mean pose; 0.0022 read under the heatmaps with
    log scales). Initialised to the same start (zero kernel, bias (1, 0) and `initial_scale`;
    `LINEAR_MAP_GAIN`).
  - `scale_activation="log"`: scales in (0.02, 1.9) through a sigmoid over their log
    (`_log_scale`) instead of the reference's 0.9 tanh(z) + 1 in (0.1, 1.9). Why: a part's
    standard deviation on 64 px sprites is 0.08-0.16 (normalised), at or below the tanh floor,
    where tanh has no gradient left: every part sat at scale 0.100 and the supervised check
    learned no covariance (L1 0.0035 against 0.0036 for the mean pose).
  - `initial_scale`: the scale every part starts at (1 = the reference, a part as large as the
    frame). A smaller start gives each part a local mask whose position the reconstruction can
    correct from the first step (see `CoPartModel` pose_prior_radius).

  Scale convention. DESIGN.md §3 writes the reference's parametrisation as 1 / (0.9 tanh z + 1),
  range (0.53, 10): that is the zoom of the image -> canonical map T^-1. The canonical -> image
  matrix A therefore has singular values 0.9 tanh z + 1 in (0.1, 1.9). This is the reading under
  which the rotation/scale loss ||A A^T - Sigma|| can be met at all: part standard deviations in
  normalised coordinates are ~0.05-0.4, which a scale >= 0.53 could never reach.

  Example:
  >>> head = TransformHead(num_parts=3, preset="tiny")
  >>> head(tf.zeros([2, 16, 16, 16]))["affines"].shape
  TensorShape([2, 3, 2, 3])
  """

  def __init__(
    self,
    num_parts,
    preset="small",
    initial_spread=0.0,
    shift_from="regression",
    initial_scale=1.0,
    linear_from="regression",
    scale_activation="tanh",
    **kwargs,
  ):
    super().__init__(**kwargs)
    if shift_from not in ("regression", "heatmap"):
      raise ValueError(f"shift_from must be regression|heatmap, got {shift_from!r}")
    if linear_from not in ("regression", "heatmap"):
      raise ValueError(f"linear_from must be regression|heatmap, got {linear_from!r}")
    if linear_from == "heatmap" and shift_from != "heatmap":
      raise ValueError('linear_from="heatmap" needs shift_from="heatmap"')
    if scale_activation not in SCALE_RANGES:
      raise ValueError(f"scale_activation must be tanh|log, got {scale_activation!r}")
    self.scale_activation = scale_activation
    self.shift_from = shift_from
    self.linear_from = linear_from
    self.num_parts = num_parts
    self.preset = get_preset(preset)
    p = self.preset
    low, high = SCALE_RANGES[scale_activation]
    if not low < initial_scale < high:
      raise ValueError(f"initial_scale must be in ({low}, {high}), got {initial_scale}")
    self.initial_scale = float(initial_scale)
    if scale_activation == "tanh":
      start_z = float(np.arctanh((self.initial_scale - 1.0) / 0.9))
    else:
      start_z = _log_scale_inverse(self.initial_scale)
    k = num_parts
    # The regression trunk (strided convs -> flatten -> hidden -> dense heads) exists only when it
    # predicts something: with both the centre and the linear part read from heatmaps it is unused.
    regress = linear_from == "regression"
    self._conv_names = layers_lib.add_sublayers(
      self,
      "conv",
      [
        layers_lib.conv_norm_act(c, p.groups, strides=2, name=f"conv_{i}")
        for i, c in enumerate(p.head_channels if regress else ())
      ],
    )
    self.flatten = keras.layers.Flatten() if regress else None
    self.hidden = (
      keras.layers.Dense(p.head_hidden, activation="relu", name="hidden") if regress else None
    )
    # Pose outputs always in float32 (under a mixed precision policy too): they set the warp's
    # sampling positions and enter the losses, where bfloat16's 8-bit mantissa is too coarse.
    self.rotation = (
      keras.layers.Dense(
        2 * k,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([1.0, 0.0] * k),
        name="rotation",
        dtype="float32",
      )
      if regress
      else None
    )
    self.scale = (
      keras.layers.Dense(
        2 * k,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(start_z),
        name="scale",
        dtype="float32",
      )
      if regress
      else None
    )
    # linear_from="heatmap": per cell and part (c, s, z_x, z_y), pooled by the part's heatmap.
    self.linear_map = (
      keras.layers.Conv2D(
        4 * k,
        3,
        padding="same",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(
          [v / LINEAR_MAP_GAIN for v in [1.0, 0.0, start_z, start_z] * k]
        ),
        name="linear_map",
        dtype="float32",
      )
      if linear_from == "heatmap"
      else None
    )
    self.initial_spread = float(initial_spread)
    # shift_from="heatmap": t_k is the soft-argmax (expected position) of a per-part heatmap over
    # the feature grid, translation-equivariant by construction. The reference regresses t_k
    # from flattened features, which must learn position from scratch: on sprites its centres
    # stayed ~15 px from the shapes after 600 steps (measured), so no part ever tracked one.
    self.heatmap = (
      keras.layers.Conv2D(k, 3, padding="same", name="heatmap", dtype="float32")
      if shift_from == "heatmap"
      else None
    )
    self.shift = (
      keras.layers.Dense(
        2 * k,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(sunflower(k, self.initial_spread).reshape(-1)),
        name="shift",
        dtype="float32",
      )
      if self.heatmap is None
      else None
    )

  @property
  def convs(self):
    return layers_lib.sublayers(self, self._conv_names)

  def build(self, input_shape):
    shape = tuple(input_shape)
    for layer in self.convs:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    if any(d is None for d in shape[1:]):
      raise ValueError(f"TransformHead needs a static spatial size, got {shape}")
    if self.hidden is not None:
      self.flatten.build(shape)  # stateless; model.fit under a strategy wants every layer built
      self.hidden.build((shape[0], shape[1] * shape[2] * shape[3]))
      hidden = (shape[0], self.preset.head_hidden)
      for layer in (self.rotation, self.scale, self.shift):
        if layer is not None:
          layer.build(hidden)
    if self.linear_map is not None:
      self.linear_map.build(tuple(input_shape))
    if self.heatmap is not None:
      self.heatmap.build(tuple(input_shape))
      # A trainable start position per part: a Gaussian bump (std 0.25) on the sunflower point of
      # `initial_spread`, added to the heatmap logits. Zero spread = flat = every part at the
      # centre, interchangeable (see `sunflower`).
      h, w = input_shape[1], input_shape[2]
      grid = grid_lib.make_grid_np(h, w).reshape(-1, 1, 2)
      k = self.num_parts
      centres = sunflower(k, self.initial_spread)[None]
      bump = -np.sum((grid - centres) ** 2, axis=-1) / (2 * 0.25**2)
      self.heatmap_bias = self.add_weight(
        shape=(h * w, k),
        initializer=keras.initializers.Constant(bump if self.initial_spread > 0 else 0.0),
        name="heatmap_bias",
        dtype="float32",
      )
    self.built = True

  def call(self, features):
    """Returns a dict: affines `[B, K, 2, 3]`, cos_sin, scale, shift (each `[B, K, 2]`), and with
    `shift_from="heatmap"` the heatmap logits `[B, h, w, K]` (bias included; their softmax over
    the h x w cells is each part's heatmap)."""
    k = self.num_parts
    if self.hidden is not None:
      x = features
      for layer in self.convs:
        x = layer(x)
      x = self.hidden(self.flatten(x))
      cos_sin = tf.reshape(self.rotation(x), [-1, k, 2])
      scale_z = tf.reshape(self.scale(x), [-1, k, 2])
    if self.heatmap is None:
      shift = tf.reshape(self.shift(x), [-1, k, 2])
    else:
      logits = self.heatmap(tf.cast(features, tf.float32))  # [B, h, w, K]
      shape = tf.shape(logits)
      logits = tf.reshape(logits, [shape[0], -1, k]) + self.heatmap_bias
      pdf = tf.nn.softmax(logits, axis=1)
      grid = tf.reshape(grid_lib.make_grid(shape[1], shape[2], pdf.dtype), [-1, 2])
      shift = tf.einsum("bnk,nc->bkc", pdf, grid)
      if self.linear_map is not None:
        linear = LINEAR_MAP_GAIN * self.linear_map(tf.cast(features, tf.float32))  # [B, h, w, 4K]
        linear = tf.reshape(linear, [shape[0], -1, k, 4])
        linear = tf.einsum("bnk,bnkc->bkc", pdf, linear)  # [B, K, 4]
        cos_sin, scale_z = linear[..., :2], linear[..., 2:]
    cos_sin = cos_sin / tf.sqrt(tf.reduce_sum(tf.square(cos_sin), axis=-1, keepdims=True) + 1e-8)
    if self.scale_activation == "tanh":
      scale = 0.9 * tf.tanh(scale_z) + 1.0
    else:
      scale = _log_scale(scale_z)
    out = {
      "affines": affine_lib.from_pose(cos_sin, scale, shift),
      "cos_sin": cos_sin,
      "scale": scale,
      "shift": shift,
    }
    if self.heatmap is not None:
      out["heatmap_logits"] = tf.reshape(logits, shape)  # softmax over the h x w cells = heatmap
    return out
