"""Affine transform helpers.

Representations used across copart_tf:
- `[..., 2, 3]` matrices ``[A | t]`` acting on column vectors (x, y, 1) in normalised coordinates
  (see `copart_tf.ops.grid`); this is how part poses T_k are stored.
- `[..., 3, 3]` homogeneous matrices, for composition and inversion.
- `[..., 6]` tuples ``(a, b, tx, c, d, ty)`` = the rows of the 2x3 matrix, flattened.

All functions are pure TF, differentiable and XLA-compatible.
"""

import math

import tensorflow as tf


def from_params(params):
  """`[..., 6]` tuples (a, b, tx, c, d, ty) -> `[..., 2, 3]` matrices."""
  params = tf.convert_to_tensor(params)
  shape = tf.concat([tf.shape(params)[:-1], [2, 3]], axis=0)
  return tf.reshape(params, shape)


def to_params(affines):
  """`[..., 2, 3]` matrices -> `[..., 6]` tuples (a, b, tx, c, d, ty)."""
  affines = tf.convert_to_tensor(affines)
  shape = tf.concat([tf.shape(affines)[:-2], [6]], axis=0)
  return tf.reshape(affines, shape)


def to_homogeneous(affines):
  """`[..., 2, 3]` -> `[..., 3, 3]` by appending the row (0, 0, 1)."""
  affines = tf.convert_to_tensor(affines)
  last_row = tf.constant([0.0, 0.0, 1.0], dtype=affines.dtype)
  last_row = tf.broadcast_to(last_row, tf.concat([tf.shape(affines)[:-2], [1, 3]], axis=0))
  return tf.concat([affines, last_row], axis=-2)


def from_homogeneous(matrices):
  """`[..., 3, 3]` -> `[..., 2, 3]` (drops the last row; it must be (0, 0, 1))."""
  return tf.convert_to_tensor(matrices)[..., :2, :]


def identity(batch_shape=(), dtype=tf.float32):
  """Identity transforms of shape `batch_shape + [2, 3]`."""
  eye = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
  return tf.broadcast_to(eye, list(batch_shape) + [2, 3])


def compose(outer, inner):
  """Composition ``outer o inner`` (apply `inner` first), both `[..., 2, 3]`."""
  outer = tf.convert_to_tensor(outer)
  inner = tf.convert_to_tensor(inner, dtype=outer.dtype)
  linear = tf.matmul(outer[..., :2], inner[..., :2])
  shift = tf.linalg.matvec(outer[..., :2], inner[..., 2]) + outer[..., 2]
  return tf.concat([linear, shift[..., None]], axis=-1)


def invert(affines):
  """Inverse of `[..., 2, 3]` affine maps (closed-form 2x2 inverse; cheap gradients).

  Singular matrices give Inf/NaN; the transform head's scale parametrisation keeps
  determinants away from zero.
  """
  affines = tf.convert_to_tensor(affines)
  a, b, tx = affines[..., 0, 0], affines[..., 0, 1], affines[..., 0, 2]
  c, d, ty = affines[..., 1, 0], affines[..., 1, 1], affines[..., 1, 2]
  inv_det = 1.0 / (a * d - b * c)
  ia, ib = d * inv_det, -b * inv_det
  ic, id_ = -c * inv_det, a * inv_det
  itx = -(ia * tx + ib * ty)
  ity = -(ic * tx + id_ * ty)
  row0 = tf.stack([ia, ib, itx], axis=-1)
  row1 = tf.stack([ic, id_, ity], axis=-1)
  return tf.stack([row0, row1], axis=-2)


def apply(affines, points):
  """Applies `[..., 2, 3]` affines to points `[..., N, 2]` -> `[..., N, 2]`."""
  affines = tf.convert_to_tensor(affines)
  points = tf.convert_to_tensor(points, dtype=affines.dtype)
  return tf.matmul(points, affines[..., :2], transpose_b=True) + affines[..., None, :, 2]


def from_pose(cos_sin, scale, shift):
  """Builds T = [R(theta) diag(sx, sy) | t] from pose parameters.

  Args:
    cos_sin: `[..., 2]` (cos theta, sin theta), assumed unit length.
    scale: `[..., 2]` (sx, sy).
    shift: `[..., 2]` (tx, ty).

  Returns:
    `[..., 2, 3]` affine matrices.
  """
  cos, sin = cos_sin[..., 0], cos_sin[..., 1]
  sx, sy = scale[..., 0], scale[..., 1]
  row0 = tf.stack([cos * sx, -sin * sy, shift[..., 0]], axis=-1)
  row1 = tf.stack([sin * sx, cos * sy, shift[..., 1]], axis=-1)
  return tf.stack([row0, row1], axis=-2)


def to_pose(affines):
  """Decomposes `[..., 2, 3]` affines into (theta, scale (sx, sy), shift) (QR: A = R(theta) U).

  Exact for A = R(theta) diag(sx, sy); for general A, `scale` holds the diagonal of the
  upper-triangular factor (shear is dropped). Used for logging and part tracks.

  Returns:
    theta `[...]` radians in (-pi, pi], scale `[..., 2]`, shift `[..., 2]`.
  """
  affines = tf.convert_to_tensor(affines)
  a, c = affines[..., 0, 0], affines[..., 1, 0]
  b, d = affines[..., 0, 1], affines[..., 1, 1]
  theta = tf.atan2(c, a)
  sx = tf.sqrt(a * a + c * c)
  sy = (a * d - b * c) / tf.maximum(sx, 1e-12)
  return theta, tf.stack([sx, sy], axis=-1), affines[..., 2]


def random_affine(
  batch_size, seed, max_rotation=2 * math.pi, scale_range=(0.75, 1.0), max_shift=0.2
):
  """Random affine maps for the equivariance loss (DESIGN.md §5), stateless.

  rotation ~ U[0, max_rotation), each axis scale ~ U[scale_range), shift ~ U[-max_shift, max_shift)^2
  (the reference draws U[0, 0.2)^2; a symmetric shift avoids a systematic drift).

  Args:
    batch_size: number of transforms.
    seed: `[2]` int seed for `tf.random.stateless_uniform`.

  Returns:
    `[batch_size, 2, 3]` float32.
  """
  seeds = tf.random.experimental.stateless_split(seed, 3)
  theta = tf.random.stateless_uniform([batch_size], seeds[0], 0.0, max_rotation)
  scale = tf.random.stateless_uniform([batch_size, 2], seeds[1], scale_range[0], scale_range[1])
  shift = tf.random.stateless_uniform([batch_size, 2], seeds[2], -max_shift, max_shift)
  cos_sin = tf.stack([tf.cos(theta), tf.sin(theta)], axis=-1)
  return from_pose(cos_sin, scale, shift)
