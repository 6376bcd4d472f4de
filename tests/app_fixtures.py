"""Small fixtures for tests and benchmarks: a tiny run dir, synthetic videos, child processes.

Tests import it as ``import app_fixtures`` (pytest puts tests/ on sys.path); benchmarks put
tests/ on sys.path first (`benchmarks/segment_memory.py`).

`make_tiny_run_dir` writes what `copart_tf.model.loading.load_from_model_dir` reads (config.json
and ``checkpoints/ckpt-1``) for a tiny-preset model whose weights are perturbed with a fixed seed
(so part labels and poses vary from frame to frame). It is not a trained model. The checkpoint
holds the model only (no optimizer).
"""

import json
import os

import numpy as np

# The source tree (tests/..), put on the children's PYTHONPATH.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_tiny_run_dir(model_dir, num_parts=3, image_size=64, seed=0, noise=0.05):
  """Writes a tiny, randomly perturbed model as a training run dir.

  Args:
    model_dir: folder to create.
    num_parts: K.
    image_size: S.
    seed: weight seed.
    noise: standard deviation of the weight perturbation.

  Returns:
    the built `CoPartModel` (same weights as the checkpoint).
  """
  import keras
  import tensorflow as tf

  from copart_tf.model import loading
  from copart_tf.model.copart_model import CoPartModel

  keras.utils.set_random_seed(seed)
  model = CoPartModel(num_parts=num_parts, preset="tiny", image_size=image_size)
  model.build()
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    variable.assign(variable.numpy() + rng.normal(0.0, noise, variable.shape).astype(np.float32))
  os.makedirs(model_dir, exist_ok=True)
  config = {
    "num_parts": num_parts,
    "preset": "tiny",
    "image_size": image_size,
    "compose_warps": False,
    "model_dir": os.path.abspath(model_dir),
  }
  with open(os.path.join(model_dir, loading.CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2)
  checkpoint = tf.train.Checkpoint(model=model)
  checkpoint.save(os.path.join(model_dir, loading.CHECKPOINT_SUBDIR, "ckpt"))
  return model


def moving_shapes_frame(index, height, width):
  """Frame `index` of a deterministic scene: a gradient background and three moving shapes.

  Returns:
    uint8 `[height, width, 3]`.
  """
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  t = index / 25.0
  frame = np.empty([height, width, 3], np.float32)
  frame[..., 0] = 60 + 40 * x / width
  frame[..., 1] = 70 + 30 * y / height
  frame[..., 2] = 90
  cx = width * (0.5 + 0.3 * np.cos(t))
  cy = height * (0.5 + 0.3 * np.sin(1.3 * t))
  disk = (x - cx) ** 2 + (y - cy) ** 2 < (0.15 * min(height, width)) ** 2
  frame[disk] = (230, 200, 40)
  bx = width * (0.5 + 0.35 * np.sin(0.7 * t))
  box = (np.abs(x - bx) < 0.08 * width) & (np.abs(y - 0.6 * height) < 0.25 * height)
  frame[box] = (40, 160, 220)
  angle = 1.1 * t
  u = (x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)
  v = -(x - width / 2) * np.sin(angle) + (y - height / 2) * np.cos(angle)
  bar = (np.abs(u) < 0.3 * width) & (np.abs(v) < 0.04 * height)
  frame[bar] = (200, 60, 90)
  return frame.astype(np.uint8)


def write_moving_shapes_video(path, num_frames, size=64, fps=25.0, width=None):
  """Writes `num_frames` frames of `moving_shapes_frame` (streamed, bounded memory).

  Args:
    path: ``.mp4`` / ``.gif`` file, or a folder (PNG frames).
    num_frames: frames.
    size: frame height (and width unless `width` is given).
    fps: frame rate of video files.
    width: frame width.

  Returns:
    `path`.
  """
  from PIL import Image

  from copart_tf.apps import media

  height, width = int(size), int(width or size)
  if os.path.splitext(path)[1].lower() in (".mp4", ".gif", ".mov"):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = media.VideoWriter(path, fps)
    try:
      for i in range(num_frames):
        writer.write(moving_shapes_frame(i, height, width))
    finally:
      writer.close()
  else:
    os.makedirs(path, exist_ok=True)
    for i in range(num_frames):
      Image.fromarray(moving_shapes_frame(i, height, width)).save(
        os.path.join(path, f"{i:05d}.png")
      )
  return path


def start_cli(module, *args, cwd=None):
  """Starts ``python -m <module> <args>`` (quiet TensorFlow, copart_tf importable).

  Returns:
    a `subprocess.Popen` with text stdout / stderr pipes; use `finish_cli`.
  """
  import subprocess
  import sys

  root = ROOT
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env["PYTHONPATH"] = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
  return subprocess.Popen(
    [sys.executable, "-m", module, *[str(a) for a in args]],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    cwd=cwd,
    env=env,
  )


def finish_cli(process, timeout=300):
  """Waits for a `start_cli` process: (return code, stdout, stderr)."""
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


def run_script_for_result(script, timeout=600):
  """Runs ``python -c <script>`` on the CPU and returns the JSON it printed after ``RESULT ``.

  For tests that need a fresh interpreter (e.g. logical CPU devices set before TensorFlow starts).

  Returns:
    (return code, the decoded result or None, stdout, stderr).
  """
  import subprocess
  import sys

  root = ROOT
  path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
  proc = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
    check=False,
  )
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  result = json.loads(lines[-1][len("RESULT ") :]) if len(lines) == 1 else None
  return proc.returncode, result, proc.stdout, proc.stderr
