"""benchmarks/background_estimate.py on a hand-made wall-above-a-floor dataset.

Every row of the background is one colour, so the row median is exact on the level frames and
the frame median is not; a rotation tilts the horizon and the row median misses a band along it.
"""

import os

import benchmark_scripts
import numpy as np
from PIL import Image

script = benchmark_scripts.load("background_estimate")


def _wall_and_floor(root, videos=2, frames=2, size=48):
  parts = np.zeros((frames, size, size), np.uint8)
  parts[:, 10:38, 20:28] = 1  # a standing figure, 8 px wide: under half of every row
  for v in range(videos):
    folder = os.path.join(root, "train", f"vid{v}")
    os.makedirs(folder)
    for t in range(frames):
      image = np.zeros((size, size, 3), np.uint8)
      image[:20] = (200, 190, 210)  # wall
      image[20:] = (90, 50, 60)  # floor
      image[parts[t] == 1] = (20, 120, 220)
      Image.fromarray(image).save(os.path.join(folder, f"{t:07d}.png"))
    labels = os.path.join(root, "labels", "train")
    os.makedirs(labels, exist_ok=True)
    np.savez(
      os.path.join(labels, f"vid{v}.npz"),
      parts=parts,
      part_names=np.array(["background", "figure"]),
    )


def test_row_median_is_exact_on_a_level_horizon_and_misses_a_tilted_one(tmp_path):
  _wall_and_floor(str(tmp_path))
  args = script.parse_args(
    [f"--data_dir={tmp_path}", "--image_size=48", "--degrees=0,10", "--frames_per_video=0"]
  )
  results = script.run(args)
  rows = {(r["estimate"], r["degrees"]): r for r in results["rows"]}
  assert results["frames"] == 4
  assert rows[("row_median", 0.0)]["stray_per_figure"] == 0.0
  assert rows[("row_median", 0.0)]["figure_seen"] == 1.0
  assert rows[("row_median", 10.0)]["stray_per_figure"] > 0.3  # a band along the horizon
  assert rows[("frame_median", 0.0)]["stray_per_figure"] > 1.0  # the wall is content
  assert "row_median" in script.format_table(results)
