"""Evaluation report: metrics.json, report.md, a per-part IoU bar chart and a sample grid (PIL only).

`part_palette` is the one colour table for part overlays; other modules (TensorBoard images,
demos, serving clients) import it so that part k has the same colour everywhere.
"""

import colorsys
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from copart_tf.errors import DataError

# Kelly's colours of maximum contrast (without white, black and grey), then golden-angle hues.
_BASE_COLORS = (
  (243, 195, 0),
  (135, 86, 146),
  (243, 132, 0),
  (161, 202, 241),
  (190, 0, 50),
  (194, 178, 128),
  (0, 136, 86),
  (230, 143, 172),
  (0, 103, 165),
  (249, 147, 121),
  (96, 78, 151),
  (246, 166, 0),
  (179, 68, 108),
  (220, 211, 0),
  (136, 45, 23),
  (141, 182, 0),
  (101, 69, 34),
  (226, 88, 34),
  (43, 61, 38),
)
BACKGROUND_COLOR = (0, 0, 0)
# Learned foreground parts that the majority mapping sends to the GT background.
UNMAPPED_COLOR = (90, 90, 90)

METHOD_ORDER = ("model", "position_kmeans", "mean_landmark")
METHOD_TITLES = {
  "model": "model",
  "position_kmeans": "position k-means",
  "mean_landmark": "mean landmark",
}

METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
PART_IOU_PNG = "part_iou.png"
SAMPLES_PNG = "samples.png"


def part_palette(num_parts):
  """Fixed colours for labels 0..num_parts.

  Args:
    num_parts: K, the number of foreground parts.

  Returns:
    `[K + 1, 3]` uint8; row 0 (background) is black, rows 1..K distinct colours (a fixed table of
    19, then hues spaced by the golden angle). Row k is the same whatever K is.
  """
  colors = [BACKGROUND_COLOR]
  for k in range(1, num_parts + 1):
    if k <= len(_BASE_COLORS):
      colors.append(_BASE_COLORS[k - 1])
    else:
      i = k - len(_BASE_COLORS)
      hue = (i * 0.381966) % 1.0
      value = 0.95 if i % 2 else 0.7
      r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
      colors.append((int(r * 255), int(g * 255), int(b * 255)))
  return np.asarray(colors, dtype=np.uint8)


def colorize_labels(labels, palette):
  """Label map -> RGB image.

  Args:
    labels: `[H, W]` int labels in 0..len(palette)-1.
    palette: `[N, 3]` uint8 (e.g. `part_palette(K)` or `mapped_palette(...)`).

  Returns:
    `[H, W, 3]` uint8.
  """
  labels = np.asarray(labels, dtype=np.int64)
  palette = np.asarray(palette, dtype=np.uint8)
  return palette[np.clip(labels, 0, len(palette) - 1)]


def mapped_palette(mapping, num_gt_parts):
  """Colours of learned parts through a learned -> GT mapping, so they match the GT colours.

  Args:
    mapping: `[K + 1]` learned label -> GT label.
    num_gt_parts: K_gt.

  Returns:
    `[K + 1, 3]` uint8: learned part p gets `part_palette(K_gt)[mapping[p]]`; a foreground learned
    part mapped to the background is drawn in `UNMAPPED_COLOR`.
  """
  mapping = np.asarray(mapping, dtype=np.int64)
  palette = part_palette(num_gt_parts)[mapping]
  unmapped = (mapping == 0) & (np.arange(len(mapping)) > 0)
  palette[unmapped] = UNMAPPED_COLOR
  return palette


# ------------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------------


def _fmt(value, digits=3):
  if value is None:
    return "-"
  return f"{value:.{digits}f}"


def _summary_rows(results):
  """(title, fg IoU, part IoU majority, part IoU Hungarian, MAE sum@256, mean@256, mean px)."""
  rows = []
  for name in METHOD_ORDER:
    method = results["methods"].get(name)
    if method is None:
      continue
    part = method.get("part_iou") or {}
    lm = method.get("landmarks") or {}
    rows.append(
      (
        METHOD_TITLES[name],
        _fmt(method.get("foreground_iou")),
        _fmt((part.get("majority") or {}).get("mean")),
        _fmt((part.get("hungarian") or {}).get("mean")),
        _fmt(lm.get("sum_256"), 2),
        _fmt(lm.get("mean_256"), 2),
        _fmt(lm.get("mean_px"), 2),
      )
    )
  return rows


_SUMMARY_HEADER = (
  "method",
  "FG IoU",
  "part IoU (majority)",
  "part IoU (Hungarian)",
  "landmark MAE sum @256",
  "MAE / coord @256",
  "MAE / coord (px)",
)


def format_table(results):
  """Compact plain-text summary table (for stdout).

  Args:
    results: the `Evaluator.result` dict.

  Returns:
    Multi-line string.
  """
  rows = [_SUMMARY_HEADER] + _summary_rows(results)
  widths = [max(len(r[i]) for r in rows) for i in range(len(_SUMMARY_HEADER))]
  lines = []
  for j, row in enumerate(rows):
    cells = [row[0].ljust(widths[0])] + [
      c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
    ]
    lines.append("  ".join(cells))
    if j == 0:
      lines.append("  ".join("-" * w for w in widths))
  lines.append(
    f"{results['num_test_frames']} test / {results['num_fit_frames']} fit frames, "
    f"K={results['num_pred_parts']} learned parts, {results['num_gt_parts']} GT parts, "
    f"{results['num_landmarks']} landmarks, frame {results['frame_size'][1]}x"
    f"{results['frame_size'][0]}"
  )
  lines += [f"skipped: {reason}" for reason in (results.get("skipped") or {}).values()]
  return "\n".join(lines)


def _md_table(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def render_markdown(results, images=()):
  """report.md contents.

  Args:
    results: the `Evaluator.result` dict.
    images: file names (relative to the report) of PNGs to embed.

  Returns:
    Markdown string.
  """
  methods = results["methods"]
  out = [
    "# Co-part segmentation evaluation",
    "",
    f"{results['num_test_frames']} test frames, {results['num_fit_frames']} fit frames, "
    f"frame {results['frame_size'][1]}x{results['frame_size'][0]}, "
    f"K = {results['num_pred_parts']} learned parts, {results['num_gt_parts']} GT parts, "
    f"{results['num_landmarks']} landmarks.",
    "",
    "## Summary",
    "",
    _md_table(_SUMMARY_HEADER, _summary_rows(results)),
    "",
  ]
  skipped = results.get("skipped") or {}
  if skipped:
    out += ["## Skipped", ""] + [f"- {reason}" for reason in skipped.values()] + [""]
  if methods["model"]["part_iou"]:
    out += _part_sections(results)
  out += ["## Definitions", ""]
  out += [f"- **{k}**: {v}" for k, v in results.get("definitions", {}).items()]
  out.append("")
  for image in images:
    out += [f"![{image}]({image})", ""]
  return "\n".join(out)


def _part_sections(results):
  """The per-part IoU and part mapping sections of report.md (lines)."""
  names = results["gt_part_names"]
  methods = results["methods"]
  out = ["## Per-part IoU (test split, dataset-level)", ""]
  columns = []
  for name in ("model", "position_kmeans"):
    part = (methods.get(name) or {}).get("part_iou")
    if part:
      for variant in ("majority", "hungarian"):
        columns.append((f"{METHOD_TITLES[name]} ({variant})", part[variant]))
  rows = [
    [f"{g} {names[g]}"] + [_fmt(scores["per_part"][g - 1]) for _, scores in columns]
    for g in range(1, len(names))
  ]
  rows.append(["**mean**"] + [f"**{_fmt(scores['mean'])}**" for _, scores in columns])
  out += [_md_table(["GT part"] + [c for c, _ in columns], rows), ""]
  model_part = methods["model"]["part_iou"]
  out += ["## Learned part -> GT part (fit split)", ""]
  rows = [
    [
      str(p),
      model_part["majority"]["mapping_names"][p],
      model_part["hungarian"]["mapping_names"][p],
    ]
    for p in range(1, results["num_pred_parts"] + 1)
  ]
  out += [_md_table(["learned part", "majority", "Hungarian"], rows), ""]
  return out


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------


def _font(size=12):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1
    return ImageFont.load_default()


def _text_size(draw, text, font):
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  return right - left, bottom - top


def draw_part_iou_chart(results):
  """Grouped bar chart of the per-GT-part IoU (majority and Hungarian, model and k-means).

  Args:
    results: the `Evaluator.result` dict.

  Returns:
    RGB `PIL.Image.Image`.
  """
  names = results["gt_part_names"][1:]
  series = []
  colors = [(31, 119, 180), (158, 202, 225), (214, 39, 40), (252, 174, 145)]
  for name in ("model", "position_kmeans"):
    part = (results["methods"].get(name) or {}).get("part_iou")
    if part:
      for variant in ("majority", "hungarian"):
        series.append((f"{METHOD_TITLES[name]} ({variant})", part[variant]["per_part"]))
  font = _font(12)
  bar_w = 12
  group_w = bar_w * len(series) + 14
  line_h = 16
  left, plot_h = 48, 240
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  label_h = 12 + max(
    [_text_size(probe, f"{g + 1} {n}"[:18], font)[0] for g, n in enumerate(names)] or [0]
  )
  top = 28 + line_h * len(series) + 8  # title, then one legend entry per line
  width = max(left + group_w * max(len(names), 1) + 20, 320)
  height = top + plot_h + label_h
  image = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  draw.text((left, 6), "per-part IoU (test split, dataset-level)", fill=(0, 0, 0), font=font)
  for i, ((title, _), color) in enumerate(zip(series, colors, strict=False)):
    y = 28 + i * line_h
    draw.rectangle([left, y + 2, left + 10, y + 12], fill=color)
    draw.text((left + 16, y), title, fill=(0, 0, 0), font=font)
  y0 = top + plot_h
  for tick in np.linspace(0.0, 1.0, 5):
    y = y0 - int(round(tick * plot_h))
    draw.line([left, y, width - 10, y], fill=(220, 220, 220))
    draw.text((6, y - 7), f"{tick:.2f}", fill=(0, 0, 0), font=font)
  draw.line([left, top, left, y0], fill=(0, 0, 0))
  draw.line([left, y0, width - 10, y0], fill=(0, 0, 0))
  for g, name in enumerate(names):
    gx = left + 7 + g * group_w
    for s, ((_, values), color) in enumerate(zip(series, colors, strict=False)):
      value = values[g]
      bx = gx + s * bar_w
      if value is None:
        draw.text((bx + 2, y0 - 14), "-", fill=(0, 0, 0), font=font)
        continue
      bh = int(round(max(0.0, min(1.0, value)) * plot_h))
      draw.rectangle([bx, y0 - bh, bx + bar_w - 2, y0], fill=color)
    # Part name, rotated 90 degrees under its group.
    text = f"{g + 1} {name}"[:18]
    tw, th = _text_size(draw, text, font)
    label = Image.new("RGB", (tw + 4, th + 6), (255, 255, 255))
    ImageDraw.Draw(label).text((2, 0), text, fill=(0, 0, 0), font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (gx + max(0, (group_w - 14 - label.width) // 2), y0 + 4))
  return image


def _label_cell(array, cell):
  """Nearest-neighbour upscaling of an `[H, W, 3]` uint8 image to `cell` (w, h)."""
  return Image.fromarray(np.asarray(array, dtype=np.uint8)).resize(cell, Image.NEAREST)


def draw_sample_grid(samples, results, min_cell=128):
  """Grid of test frames: image | predicted parts (majority-mapped colours) | GT parts.

  Args:
    samples: list of dicts with ``image`` (uint8 `[H, W, 3]` or None), ``pred_labels``,
      ``gt_parts``, and optional ``video`` / ``frame_index`` (see `Evaluator.samples`).
    results: the `Evaluator.result` dict (for the majority mapping and K_gt).
    min_cell: cells are enlarged by an integer factor until at least this many pixels wide.

  Returns:
    RGB `PIL.Image.Image`.
  """
  if not samples:
    raise DataError("no samples to draw")
  k_gt = results["num_gt_parts"]
  mapping = results["methods"]["model"]["part_iou"]["majority"]["mapping"]
  pred_palette = mapped_palette(mapping, k_gt)
  gt_palette = part_palette(k_gt)
  height, width = np.asarray(samples[0]["pred_labels"]).shape
  factor = max(1, int(np.ceil(min_cell / max(width, 1))))
  cell = (width * factor, height * factor)
  font = _font(12)
  header, caption, pad = 20, 16, 4
  grid_w = 3 * cell[0] + 4 * pad
  grid_h = header + len(samples) * (cell[1] + caption + pad) + pad
  grid = Image.new("RGB", (grid_w, grid_h), (255, 255, 255))
  draw = ImageDraw.Draw(grid)
  # Predicted parts are coloured through the majority mapping, so colours match the GT column.
  for c, title in enumerate(("image", "predicted", "ground truth")):
    draw.text((pad + c * (cell[0] + pad), 3), title, fill=(0, 0, 0), font=font)
  for r, sample in enumerate(samples):
    y = header + r * (cell[1] + caption + pad)
    image = sample.get("image")
    if image is None:
      image = np.full((height, width, 3), 128, dtype=np.uint8)
    image = np.asarray(image)
    if image.dtype != np.uint8:
      image = np.clip(np.asarray(image, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    cells = (
      Image.fromarray(image[..., :3]).resize(cell, Image.BILINEAR),
      _label_cell(colorize_labels(sample["pred_labels"], pred_palette), cell),
      _label_cell(colorize_labels(sample["gt_parts"], gt_palette), cell),
    )
    for c, im in enumerate(cells):
      grid.paste(im, (pad + c * (cell[0] + pad), y))
    text = f"{sample.get('video')} #{sample.get('frame_index')}"
    draw.text((pad, y + cell[1] + 1), text[:60], fill=(0, 0, 0), font=font)
  return grid


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def write_report(results, out_dir, samples=None):
  """Writes metrics.json, report.md and, when part IoU was measured, part_iou.png and (with
  samples) samples.png.

  Args:
    results: the `Evaluator.result` dict.
    out_dir: output directory (created if needed).
    samples: optional list of sample frames (`Evaluator.samples`) for the grid.

  Returns:
    dict name -> path of the written files (keys ``metrics_json``, ``report_md``,
    ``part_iou_png`` and, with samples, ``samples_png``).

  Raises:
    DataError: the directory cannot be written.
  """
  with_parts = bool(results["methods"]["model"].get("part_iou"))
  samples = samples if with_parts else None
  paths = {
    "metrics_json": os.path.join(out_dir, METRICS_JSON),
    "report_md": os.path.join(out_dir, REPORT_MD),
  }
  if with_parts:
    paths["part_iou_png"] = os.path.join(out_dir, PART_IOU_PNG)
  if samples:
    paths["samples_png"] = os.path.join(out_dir, SAMPLES_PNG)
  try:
    os.makedirs(out_dir, exist_ok=True)
    with open(paths["metrics_json"], "w") as f:
      json.dump(results, f, indent=2, allow_nan=False)
      f.write("\n")
    images = []
    if with_parts:
      draw_part_iou_chart(results).save(paths["part_iou_png"])
      images.append(PART_IOU_PNG)
    if samples:
      draw_sample_grid(samples, results).save(paths["samples_png"])
      images.append(SAMPLES_PNG)
    with open(paths["report_md"], "w") as f:
      f.write(render_markdown(results, images))
  except OSError as e:
    raise DataError(f"cannot write the evaluation report to {out_dir}: {e}") from e
  return paths
