"""Contact sheets: the part palette, colourised part maps and landmarks drawn on frames (used
by the pybullet generator and the ladder datasets)."""

import numpy as np
from PIL import Image, ImageDraw

# Part colours for the contact sheet (index 0 = background).
PALETTE = np.array(
  [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
    [128, 128, 0],
    [255, 215, 180],
    [0, 0, 128],
    [128, 128, 128],
  ],
  dtype=np.uint8,
)


def colorize_parts(parts):
  """Part labels `[..., H, W]` -> RGB uint8 with `PALETTE` (0 = black)."""
  return PALETTE[np.asarray(parts) % len(PALETTE)]


def draw_landmarks(image, landmarks, visible, names, skeleton, scale=1):
  """Draws landmarks (filled = visible, hollow = hidden) and skeleton lines on an RGB image.

  Args:
    image: `[H, W, 3]` uint8 (already upscaled by `scale`).
    landmarks: `[L, 2]` pixel coordinates of the original-size frame.
    visible: `[L]` bool.
    names: L landmark names.
    skeleton: pairs of names to connect.
    scale: upscaling factor of `image` relative to the landmark coordinates.

  Returns:
    `[H, W, 3]` uint8.
  """
  pil = Image.fromarray(image)
  draw = ImageDraw.Draw(pil)
  pts = (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5
  index = {n: i for i, n in enumerate(names)}
  for a, b in skeleton:
    ia, ib = index[a], index[b]
    draw.line([tuple(pts[ia]), tuple(pts[ib])], fill=(255, 255, 255), width=1)
  r = max(1.5, scale * 1.2)
  for i, (x, y) in enumerate(pts):
    color = tuple(int(c) for c in PALETTE[1 + i % (len(PALETTE) - 1)])
    box = [x - r, y - r, x + r, y + r]
    if visible[i]:
      draw.ellipse(box, fill=color, outline=(0, 0, 0))
    else:
      draw.ellipse(box, outline=color)
  return np.asarray(pil)


def _sheet_row(video, spec, scale=None):
  """One row: for two frames (first, middle): frame | part map | frame + landmarks."""
  size = video["frames"].shape[1]
  scale = scale or max(1, 256 // size)
  tiles = []
  num_frames = len(video["frames"])
  for t in sorted({0, num_frames // 2}):
    frame = np.kron(video["frames"][t], np.ones((scale, scale, 1), np.uint8))
    parts = np.kron(colorize_parts(video["parts"][t]), np.ones((scale, scale, 1), np.uint8))
    marked = draw_landmarks(
      frame,
      video["landmarks"][t],
      video["visible"][t],
      spec.landmark_names,
      spec.skeleton,
      scale,
    )
    tiles += [frame, parts, marked]
  while len(tiles) < 6:
    tiles.append(np.zeros_like(tiles[0]))
  return np.concatenate(tiles, axis=1)
