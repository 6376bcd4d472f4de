"""Pictures of the applications: part overlays with axes, a part-name legend, side-by-side panels.

NumPy + PIL. Colours come from `copart_tf.evaluation.report.part_palette` (part k has the same
colour in every tool, the evaluation report and TensorBoard); the background is left uncoloured.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from copart_tf.apps import media
from copart_tf.evaluation.report import part_palette
from copart_tf.ops import grid as grid_lib
from copart_tf.training import visualize

# Length of the drawn axes as a fraction of the pose's canonical axes (A_k's columns). A column
# of A_k spans half the model frame at scale 1, which would cover the image; a quarter of it
# gives readable arrows.
DEFAULT_AXIS_SCALE = 0.25
LEGEND_BACKGROUND = (24, 24, 24)
CAPTION_BACKGROUND = (0, 0, 0)


def font(size=11):
  """Pillow's default font at `size` pixels (a bitmap font on Pillow < 10.1)."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:
    return ImageFont.load_default()


def text_width(text, draw_font):
  left, _, right, _ = draw_font.getbbox(text)
  return right - left


def render_overlay(frame, labels, palette, alpha=0.6, normalized_affines=None, axis_scale=None):
  """One overlay frame: parts coloured, background untouched, optional part axes.

  Args:
    frame: uint8 `[H, W, 3]`.
    labels: int `[H, W]`, 0 = background.
    palette: uint8 `[K+1, 3]`.
    alpha: overlay strength in [0, 1].
    normalized_affines: optional `[K, 2, 3]` poses (canonical -> normalised coordinates of this
      frame): draws each part's centre and axes (coloured: x axis, white: y axis).
    axis_scale: axis length multiplier (default `DEFAULT_AXIS_SCALE`).

  Returns:
    uint8 `[H, W, 3]`.
  """
  out = visualize.overlay_parts(frame, labels, alpha=alpha, palette=palette)
  if normalized_affines is not None:
    out = draw_axes(
      out, normalized_affines, palette, DEFAULT_AXIS_SCALE if axis_scale is None else axis_scale
    )
  return out


def draw_axes(image, normalized_affines, palette, axis_scale=DEFAULT_AXIS_SCALE):
  """Draws every part's centre t_k (a dot in the part's colour, dark outline) and axes.

  The axes are A_k's columns scaled by `axis_scale`: the x axis black, the y axis white, so both
  stay visible on top of the part's own colour.

  Args:
    image: uint8 `[H, W, 3]`.
    normalized_affines: `[K, 2, 3]` poses, canonical -> normalised coordinates of this image.
    palette: uint8 `[K+1, 3]`.
    axis_scale: axis length multiplier.

  Returns:
    uint8 `[H, W, 3]` (a new array).
  """
  affines = np.asarray(normalized_affines, np.float32)
  height, width = image.shape[:2]
  side = min(height, width)
  radius = max(1.5, side / 64)
  line = max(1, round(side / 128))
  canvas = Image.fromarray(np.ascontiguousarray(image))
  draw = ImageDraw.Draw(canvas)
  for k in range(affines.shape[0]):
    centre = affines[k, :, 2]
    points = np.stack(
      [centre, centre + axis_scale * affines[k, :, 0], centre + axis_scale * affines[k, :, 1]]
    )
    (cx, cy), (ax, ay), (bx, by) = grid_lib.normalized_to_pixels(points, height, width)
    draw.line([(cx, cy), (ax, ay)], fill=(0, 0, 0), width=line)
    draw.line([(cx, cy), (bx, by)], fill=(255, 255, 255), width=line)
    colour = tuple(int(c) for c in palette[k + 1])
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    draw.ellipse(box, fill=colour, outline=(0, 0, 0))
  return np.asarray(canvas)


def legend_panel(part_names, palette, height, font_size=None):
  """A panel listing each part's colour and name (background omitted), in columns if needed.

  Args:
    part_names: K+1 names, [0] = background.
    palette: uint8 `[K+1, 3]`.
    height: panel height in pixels (the frame's).
    font_size: text size (default from the height, 9-14 px).

  Returns:
    uint8 `[height, width, 3]`.
  """
  size = font_size or int(np.clip(height // 12, 9, 14))
  draw_font = font(size)
  row = size + 3
  swatch = size
  pad = 3
  rows_per_column = max(1, (height - 2 * pad) // row)
  names = list(part_names[1:])
  columns = [names[i : i + rows_per_column] for i in range(0, len(names), rows_per_column)]
  widths = [swatch + 4 + max(text_width(n, draw_font) for n in col) for col in columns]
  width = 2 * pad + sum(widths) + pad * (len(columns) - 1)
  canvas = Image.new("RGB", (max(width, 1), height), LEGEND_BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  x = pad
  k = 1
  for col, col_width in zip(columns, widths, strict=True):
    y = pad
    for name in col:
      colour = tuple(int(c) for c in palette[k])
      draw.rectangle([x, y + 1, x + swatch - 1, y + swatch], fill=colour)
      draw.text((x + swatch + 4, y), name, fill=(235, 235, 235), font=draw_font)
      y += row
      k += 1
    x += col_width + pad
  return np.asarray(canvas)


def legend_image(part_names, palette=None, height=None):
  """A standalone legend picture (``legend.png``): one row per part."""
  palette = part_palette(len(part_names) - 1) if palette is None else palette
  size = 14
  rows = len(part_names) - 1
  return legend_panel(part_names, palette, height or (rows * (size + 3) + 6), font_size=size)


def side_by_side(panels, captions=None, size=None):
  """Panels resized to a common square size and put in a row, with optional captions above.

  Args:
    panels: list of uint8 `[H_i, W_i, 3]`.
    captions: optional list of strings, one per panel.
    size: side of each (square) panel; default: the first panel's height.

  Returns:
    uint8 `[size (+ caption bar), len(panels) * size, 3]`.
  """
  size = int(size or panels[0].shape[0])
  row = np.concatenate([media.resize_frame(p, size, size) for p in panels], axis=1)
  if not captions:
    return row
  text_size = int(np.clip(size // 10, 9, 14))
  bar_height = (text_size + 5) // 2 * 2  # even: H.264 needs even frame sizes
  bar = Image.new("RGB", (row.shape[1], bar_height), CAPTION_BACKGROUND)
  draw = ImageDraw.Draw(bar)
  draw_font = font(text_size)
  for i, caption in enumerate(captions):
    x = i * size + max(0, (size - text_width(caption, draw_font)) // 2)
    draw.text((x, 1), caption, fill=(235, 235, 235), font=draw_font)
  return np.concatenate([np.asarray(bar), row], axis=0)


def append_panel(frame, panel):
  """`frame` with `panel` (same height) to its right."""
  return np.concatenate([frame, panel], axis=1)
