r"""Synthetic co-part dataset with exact ground truth, rendered with pybullet's TinyRenderer.

Usage::

  python -m copart_tf.synthetic --body=humanoid_mocap --out=data/humanoid \
      --train_videos=40 --test_videos=10 --frames=64 --size=128 --seed=0

or, from Python, `synthesize_dataset(...)` (used by the training CLI's ``--synthesize_if_missing``).

The names in `LADDER_DATASETS` (``sprites``, ``figure2d``) are numpy-only "quality ladder"
datasets that need no pybullet: ``--body=sprites`` hands over to `copart_tf.synthetic.sprites` (and
``figure2d`` to `copart_tf.synthetic.figure2d`), which have their own defaults and CLIs.

Output (FOMM layout + our side-car, see docs/ARCHITECTURE.md)::

  root/{train,test}/<video>/<frame:05d>.png       RGB frames, size x size
  root/labels/{train,test}/<video>.npz            parts, links, landmarks, visible, names
  root/meta.json                                  body, K, part names, camera per video ...
  root/contact_sheet.png                          frame | part map | landmarks, a few rows

How a video is made (all randomness from ``np.random.default_rng([seed, split, index])``, so the
same seed gives byte-identical files and each video is independent of the others):

1. Motion: a mocap clip and start time (or a random smooth trajectory for the arm), one kinematic
   pose per frame at ``fps``; the root's horizontal drift is removed (treadmill, see `bodies`).
2. Camera: ONE fixed camera per video (static background, like Tai-Chi-HD). Azimuth is uniform,
   elevation uniform in [0, 30] degrees, vertical field of view in [35, 50] degrees. The link
   bounding boxes of ALL frames are projected first, then distance and aim are solved so their
   union spans a random 60-90 % of the frame height (at most 92 % of the width), roughly centred.
3. Appearance: a random body colour with a small per-link variation (hue +-0.02, value +-0.07), a
   plain or checkered floor and a sky with a vertical gradient, all with random colours that keep
   some contrast to the body; random light direction and ambient/diffuse strength; no shadows
   (the background stays exactly static).
4. Rendering: TinyRenderer RGB + per-link segmentation + depth at ``supersample`` x the size. RGB
   is box-filtered down (area average, anti-aliasing); label maps take the most frequent label of
   each supersample block (ties split by a fixed 2x2 pixel-parity order so no direction is
   favoured). Each output pixel's label is therefore the part covering most of its area, aligned
   with the averaged colour. TinyRenderer samples pixel (i, j) at (i - 0.5, j + 0.5) in
   pixel-centre coordinates; the projection matrix used for rendering is shifted by half a pixel
   to undo that, so renders, labels and projected landmarks share `copart_tf.ops.grid`'s
   convention (0 = centre of the first pixel).
5. Landmarks: world points attached to links, projected with the same view/projection matrices.
   ``visible`` = inside the frame and not occluded: the landmark's camera depth is at most the
   rendered depth at its (supersampled) pixel plus the body's ``visibility_tolerance`` (0.08-0.12 m,
   about one limb radius, because joint centres lie inside the limbs). Occluders closer than that
   tolerance (e.g. a hand resting on the chest) do not count as occlusion.

Generation writes into a temporary sibling folder ``.<name>.partial-*`` and renames it to
``out_dir`` only when everything is written, so a killed run never leaves a dataset that looks
complete.
"""

import importlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from copart_tf.data.ground_truth import write_ground_truth
from copart_tf.errors import ConfigError, DataError
from copart_tf.synthetic import bodies as bodies_lib
from copart_tf.synthetic import sprites
from copart_tf.synthetic.appearance import BACKGROUNDS
from copart_tf.synthetic.render import render_video
from copart_tf.synthetic.scene import Scene, require_pybullet
from copart_tf.synthetic.sheet import _sheet_row

# The generator's name in meta.json: its module path when it was written, kept so that data sets
# keep their identity (and the same seed the same bytes) across the move to copart_tf.synthetic.
GENERATOR_VERSION = "copart_tf.data.synthesize/1"
SPLITS = ("train", "test")

# Numpy-only synthetic datasets (no pybullet): name -> (module, generator function). Imported lazily.
LADDER_DATASETS = {
  "sprites": ("copart_tf.synthetic.sprites", "synthesize_sprites_dataset"),
  "figure2d": ("copart_tf.synthetic.figure2d", "synthesize_figure2d_dataset"),
}
DATASET_NAMES = tuple(sorted(bodies_lib.BODIES)) + tuple(sorted(LADDER_DATASETS))


def ladder_generator(name):
  """The generator function of a `LADDER_DATASETS` name: f(root, train_videos, test_videos,
  frames, size, seed, supersample=..., progress=..., contact_sheet=..., overwrite=...)."""
  module, function = LADDER_DATASETS[name]
  return getattr(importlib.import_module(module), function)


# ----------------------------------------------------------------------------------------------
# Whole dataset.


def _video_rng(seed, split_index, video_index):
  return np.random.default_rng(np.random.SeedSequence([seed, split_index, video_index]))


def _save_png(path, image):
  Image.fromarray(image).save(path, format="PNG", compress_level=6)


def synthesize_dataset(
  body,
  out_dir,
  train_videos,
  test_videos,
  frames,
  size=128,
  seed=0,
  progress=None,
  fps=30.0,
  supersample=None,
  contact_sheet=True,
  overwrite=False,
  background="mixed",
  clips=None,
  flag="--body",
):
  """Generates a synthetic dataset in the FOMM layout with the ground-truth side-car.

  Args:
    body: body name (see `bodies.BODIES`): ``humanoid_mocap``, ``kuka_iiwa`` or ``laikago``; or
      a numpy-only dataset of `LADDER_DATASETS` (``sprites``, ``figure2d``), which uses `out_dir`,
      the video counts, `frames`, `size`, `seed`, `progress`, `supersample`, `contact_sheet` and `overwrite` and ignores the rest.
    out_dir: dataset root to create.
    train_videos: number of training videos.
    test_videos: number of test videos.
    frames: frames per video T.
    size: frame size S (square).
    seed: non-negative integer; the same seed gives byte-identical files.
    progress: optional callable(done_frames, total_frames), called after every frame.
    fps: frame rate of the motion.
    supersample: anti-aliasing factor (1 = off); None = the generator's default (2 for the
      pybullet bodies, 4 for the ladder datasets).
    contact_sheet: also write ``contact_sheet.png``.
    overwrite: replace an existing non-empty `out_dir` (otherwise that is an error).
    background: "mixed" (default), "plain" or "textured" floors (see `_sample_appearance`).
    clips: optional list of motion clip names to draw from (default: all of the body's clips);
      e.g. `bodies.UPRIGHT_HUMANOID_CLIPS` for Tai-Chi-like standing motions.
    flag: the flag that named `body`, for the error of a pybullet body without pybullet.

  Returns:
    dict summary: ``out_dir``, ``body``, ``num_parts``, ``part_names``, ``landmark_names``,
    ``videos`` {split: count}, ``frames`` (total), ``seconds``, ``frames_per_second``.

  Raises:
    ConfigError: bad arguments (names the argument); a pybullet body when pybullet is not
      installed (``<flag>=<body> needs pybullet: pip install copart_tf[synthetic] ...``).
    DataError: `out_dir` exists and is not empty (without `overwrite`).
  """
  if body in LADDER_DATASETS:
    kwargs = {} if supersample is None else {"supersample": supersample}
    summary = ladder_generator(body)(
      out_dir,
      train_videos=train_videos,
      test_videos=test_videos,
      frames=frames,
      size=size,
      seed=seed,
      progress=progress,
      contact_sheet=contact_sheet,
      overwrite=overwrite,
      **kwargs,
    )
    return {"body": body, **summary}
  if body not in bodies_lib.BODIES:
    raise ConfigError(
      f"--body={body!r} is not a known body or dataset; choose one of {list(DATASET_NAMES)}"
    )
  spec = bodies_lib.get_body(body)
  require_pybullet(f"{flag}={body}")  # a one-line ConfigError when pybullet is not installed
  supersample = 2 if supersample is None else supersample
  _check_args(train_videos, test_videos, frames, size, seed, fps, supersample)
  if background not in BACKGROUNDS:
    raise ConfigError(f"--background={background!r}: choose one of {', '.join(BACKGROUNDS)}")
  clips = list(clips) if clips else None
  if clips:
    unknown = [c for c in clips if c not in spec.clips]
    if unknown:
      raise ConfigError(
        f"--clips: body {spec.name} has no clip(s) {', '.join(unknown)}; "
        f"available: {', '.join(spec.clips) or '(procedural motion, no clips)'}"
      )
  out_dir = os.path.abspath(os.fspath(out_dir))
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise DataError(f"--out={out_dir} exists and is not a directory")
    if os.listdir(out_dir) and not overwrite:
      raise DataError(
        f"--out={out_dir} already exists and is not empty; remove it or use --overwrite"
      )
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
  counts = {"train": int(train_videos), "test": int(test_videos)}
  total = (counts["train"] + counts["test"]) * int(frames)
  done = [0]

  def on_frame():
    done[0] += 1
    if progress is not None:
      progress(done[0], total)

  start = time.perf_counter()
  scene = None
  try:
    scene = Scene(spec)
    videos_meta = {}
    sheet_rows = []
    for split_index, split in enumerate(SPLITS):
      videos_meta[split] = []
      for i in range(counts[split]):
        rng = _video_rng(seed, split_index, i)
        clip = clips[int(rng.integers(len(clips)))] if clips else None
        video = render_video(
          scene,
          rng,
          int(frames),
          int(size),
          float(fps),
          supersample,
          on_frame,
          clip=clip,
          background=background,
        )
        name = f"{i:05d}_{video['info']['clip']}"
        frame_dir = os.path.join(tmp, split, name)
        os.makedirs(frame_dir)
        for t in range(int(frames)):
          _save_png(os.path.join(frame_dir, f"{t:05d}.png"), video["frames"][t])
        write_ground_truth(
          os.path.join(tmp, "labels", split, name + ".npz"),
          parts=video["parts"],
          links=video["links"],
          landmarks=video["landmarks"],
          visible=video["visible"],
          part_names=spec.part_names,
          link_names=scene.link_names,
          landmark_names=spec.landmark_names,
        )
        videos_meta[split].append({"name": name, **video["info"]})
        if contact_sheet and len(sheet_rows) < (4 if split == "train" else 6):
          sheet_rows.append(_sheet_row(video, spec))
    meta = {
      "generator": GENERATOR_VERSION,
      "body": spec.name,
      "num_parts": spec.num_parts,
      "part_names": spec.part_names,
      "part_links": {name: list(links) for name, links in spec.parts},
      "link_names": scene.link_names,
      "landmark_names": spec.landmark_names,
      "visibility_tolerance_m": spec.visibility_tolerance,
      "size": int(size),
      "fps": float(fps),
      "frames_per_video": int(frames),
      "seed": int(seed),
      "supersample": int(supersample),
      "background": background,
      "clips": clips or list(spec.clips),
      "counts": counts,
      "videos": videos_meta,
    }
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
      f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if contact_sheet and sheet_rows:
      _save_png(os.path.join(tmp, "contact_sheet.png"), np.concatenate(sheet_rows, axis=0))
    sprites.publish_dataset(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  finally:
    if scene is not None:
      scene.close()
  seconds = time.perf_counter() - start
  return {
    "out_dir": out_dir,
    "body": spec.name,
    "num_parts": spec.num_parts,
    "part_names": spec.part_names,
    "landmark_names": spec.landmark_names,
    "videos": counts,
    "frames": total,
    "seconds": round(seconds, 3),
    "frames_per_second": round(total / seconds, 2) if seconds > 0 else None,
  }


def _check_args(train_videos, test_videos, frames, size, seed, fps, supersample):
  checks = [
    ("--train_videos", train_videos, train_videos >= 0),
    ("--test_videos", test_videos, test_videos >= 0),
    ("--frames", frames, frames >= 1),
    ("--size", size, size >= 16),
    ("--seed", seed, seed >= 0),
    ("--fps", fps, fps > 0),
    ("--supersample", supersample, 1 <= supersample <= 4),
  ]
  for flag, value, ok in checks:
    if not ok:
      raise ConfigError(f"{flag}={value} is out of range")
  if train_videos + test_videos < 1:
    raise ConfigError("--train_videos + --test_videos must be at least 1")


def synthesize_for_training(*args, **kwargs):
  """`synthesize_dataset` for the training CLI's ``--synthesize_if_missing`` (`ensure_data`):
  the same arguments, but a missing pybullet is reported against that flag."""
  return synthesize_dataset(*args, flag="--synthesize_if_missing", **kwargs)


def resolve_clips(names):
  """Expands the alias "upright" in a list of clip names."""
  out = []
  for name in names or ():
    out.extend(bodies_lib.UPRIGHT_HUMANOID_CLIPS if name == "upright" else [name])
  return out or None
