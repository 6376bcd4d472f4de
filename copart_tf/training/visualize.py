"""Pictures of what the model does: part overlays, part axes, the training image grid.

NumPy + PIL only, so the same functions serve TensorBoard, the evaluation report and the
segmentation CLI.
"""

import numpy as np
from PIL import Image, ImageDraw

from copart_tf.evaluation.report import part_palette
from copart_tf.ops import grid as grid_lib


def to_uint8(images):
  """float [0, 1] (any shape) -> uint8, clipping."""
  return (np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay_parts(image, labels, alpha=0.6, palette=None):
  """Colours every non-background pixel by its part.

  Args:
    image: uint8 `[H, W, 3]`.
    labels: int `[H, W]`, 0 = background (left uncoloured).
    alpha: overlay strength in [0, 1].
    palette: uint8 `[K+1, 3]`; defaults to `part_palette(labels.max())`.

  Returns:
    uint8 `[H, W, 3]`.
  """
  labels = np.asarray(labels)
  if palette is None:
    palette = part_palette(max(int(labels.max()), 1))
  colours = palette[np.clip(labels, 0, len(palette) - 1)].astype(np.float32)
  out = image.astype(np.float32)
  fg = (labels > 0)[..., None]
  out = np.where(fg, (1.0 - alpha) * out + alpha * colours, out)
  return (out + 0.5).astype(np.uint8)


def draw_part_axes(image, affines, palette=None, axis_scale=1.0, radius=2):
  """Draws each part's centre t_k and axes (columns of A_k) from its pose T_k.

  Args:
    image: uint8 `[H, W, 3]`.
    affines: `[K, 2, 3]` poses in normalised coordinates.
    palette: uint8 `[K+1, 3]`.
    axis_scale: length multiplier of the drawn axes.
    radius: centre dot radius in pixels.

  Returns:
    uint8 `[H, W, 3]` (a new array).
  """
  affines = np.asarray(affines, np.float32)
  height, width = image.shape[:2]
  num = affines.shape[0]
  palette = part_palette(num) if palette is None else palette
  canvas = Image.fromarray(np.ascontiguousarray(image))
  draw = ImageDraw.Draw(canvas)
  for k in range(num):
    colour = tuple(int(c) for c in palette[k + 1])
    centre = affines[k, :, 2]
    points = [
      centre,
      centre + axis_scale * affines[k, :, 0],
      centre + axis_scale * affines[k, :, 1],
    ]
    cx, cy, ax, ay, bx, by = grid_lib.normalized_to_pixels(
      np.stack(points).astype(np.float32), height, width
    ).reshape(-1)
    draw.line([(cx, cy), (ax, ay)], fill=colour, width=1)
    draw.line([(cx, cy), (bx, by)], fill=(255, 255, 255), width=1)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
  return np.asarray(canvas)


def training_grid(source, target, outputs, num_parts, max_rows=4):
  """The TensorBoard training picture, one row per example.

  Columns: source | target | source reconstruction | retargeted (target reconstruction) |
  source part overlay | target with part centres and axes from T^t.

  Args:
    source, target: float `[B, S, S, 3]`.
    outputs: NumPy dict from `CoPartModel.forward_pair`.
    num_parts: K.
    max_rows: examples drawn.

  Returns:
    uint8 `[rows * S, 6 * S, 3]`.
  """
  palette = part_palette(num_parts)
  rows = []
  for i in range(min(max_rows, source.shape[0])):
    src = to_uint8(source[i])
    tgt = to_uint8(target[i])
    labels = np.argmax(outputs["source_masks"][i], axis=-1)
    cells = [
      src,
      tgt,
      to_uint8(outputs["source_reconstruction"][i]),
      to_uint8(outputs["target_reconstruction"][i]),
      overlay_parts(src, labels, palette=palette),
      draw_part_axes(tgt, outputs["target_affines"][i], palette=palette),
    ]
    rows.append(np.concatenate(cells, axis=1))
  return np.concatenate(rows, axis=0)
