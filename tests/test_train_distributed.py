"""`python -m copart_tf.train` with --strategy=mirrored (two logical CPUs) and multi_worker.

Every run is a subprocess: the CPU must be split before TensorFlow initialises, and
MultiWorkerMirroredStrategy needs one process per worker. Everything is bounded by timeouts; on
failure the workers are killed.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "train_worker.py")
SIZE = 32
TIMEOUT = 420  # seconds per run; the machine is shared with a long training job


def write_dataset(root, videos=2, frames=4, size=SIZE):
  """A tiny FOMM-layout dataset of random frames: root/{train,test}/<video>/00000.png ..."""
  rng = np.random.default_rng(0)
  for split, count in (("train", videos), ("test", 1)):
    for v in range(count):
      folder = os.path.join(root, split, f"video{v}")
      os.makedirs(folder)
      for t in range(frames):
        pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{t:05d}.png"))


def train_flags(data_dir, model_dir, **overrides):
  values = {
    "data_dir": data_dir,
    "model_dir": model_dir,
    "preset": "tiny",
    "image_size": SIZE,
    "num_parts": 2,
    "batch_size": 4,
    "train_steps": 2,
    "log_every": 1,
    "checkpoint_every": 2,
    "image_every": 2,
    "vgg_weights": "none",
    "evaluate_at_end": "false",
  }
  values.update(overrides)
  return [f"--{name}={value}" for name, value in values.items()]


def env(**extra):
  out = dict(os.environ)
  out.pop("TF_CONFIG", None)
  out["PYTHONPATH"] = ROOT + os.pathsep + out.get("PYTHONPATH", "")
  out.update(extra)
  return out


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


class TrainDistributedTest(unittest.TestCase):
  @classmethod
  def setUpClass(cls):
    cls.tmp = tempfile.mkdtemp(prefix="test_train_distributed-")
    cls.data_dir = os.path.join(cls.tmp, "data")
    write_dataset(cls.data_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)

  def run_cli(self, args, **env_extra):
    return subprocess.run(
      [sys.executable, "-m", "copart_tf.train", *args],
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
      env=env(**env_extra),
      cwd=self.tmp,
      check=False,
    )

  def test_mirrored_two_cpus_trains(self):
    model_dir = os.path.join(self.tmp, "mirrored")
    flags = train_flags(self.data_dir, model_dir, strategy="mirrored", num_cpu_devices=2)
    result = self.run_cli(flags)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertRegex(result.stderr, r"MirroredStrategy with devices \([^)]*CPU:0[^)]*CPU:1")
    self.assertRegex(result.stderr, r"step 2/2 .* loss \d+\.\d+")
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-2.index")))
    self.assertIn("ckpt-2", result.stdout)

  def test_mirrored_batch_not_divisible_fails_with_one_line(self):
    model_dir = os.path.join(self.tmp, "mirrored_bad_batch")
    flags = train_flags(
      self.data_dir, model_dir, strategy="mirrored", num_cpu_devices=2, batch_size=3
    )
    result = self.run_cli(flags)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    lines = error_lines(result.stderr)
    self.assertEqual(len(lines), 1, result.stderr[-3000:])
    self.assertIn("--batch_size=3", lines[0])
    self.assertIn("2 replicas", lines[0])
    self.assertFalse(os.path.exists(os.path.join(model_dir, "checkpoints")))

  def test_multi_worker_two_processes_agree(self):
    model_dir = os.path.join(self.tmp, "multi_worker")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    flags = train_flags(self.data_dir, model_dir, strategy="multi_worker", batch_size=2)
    procs, logs, dumps, tmpdirs = [], [], [], []
    try:
      for index in range(2):
        tmpdirs.append(os.path.join(self.tmp, f"worker{index}_tmp"))
        os.makedirs(tmpdirs[-1])
        dumps.append(os.path.join(self.tmp, f"worker{index}.npz"))
        logs.append(open(os.path.join(self.tmp, f"worker{index}.log"), "w+"))
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        procs.append(
          subprocess.Popen(
            [sys.executable, WORKER, dumps[-1], *flags],
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
            env=env(TF_CONFIG=json.dumps(tf_config), TMPDIR=tmpdirs[-1]),
            cwd=self.tmp,
          )
        )
      deadline = time.time() + TIMEOUT
      while time.time() < deadline and any(p.poll() is None for p in procs):
        if any(p.poll() not in (None, 0) for p in procs):
          break  # one worker failed: the other would wait for it until a gRPC timeout
        time.sleep(0.5)
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
        p.wait(timeout=60)
      outputs = []
      for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for index, p in enumerate(procs):
      self.assertEqual(p.returncode, 0, f"worker {index}:\n{outputs[index][-3000:]}")

    chief, other = np.load(dumps[0]), np.load(dumps[1])
    self.assertEqual(int(chief["step"]), 2)
    self.assertEqual(int(other["step"]), 2)
    self.assertEqual(str(chief["checkpoint"]), os.path.join(model_dir, "checkpoints", "ckpt-2"))
    names = sorted(k for k in chief.files if k.startswith("mem_"))
    self.assertGreater(len(names), 10)
    self.assertEqual(names, sorted(k for k in other.files if k.startswith("mem_")))
    for name in names:
      np.testing.assert_allclose(chief[name], other[name], rtol=0, atol=1e-6, err_msg=name)
      ckpt_name = name.replace("mem_", "ckpt_")
      np.testing.assert_array_equal(chief[ckpt_name], chief[name], err_msg=ckpt_name)

    # Only the chief writes model_dir; the other worker saved into a temporary dir, since removed.
    self.assertEqual(
      sorted(os.listdir(os.path.join(model_dir, "checkpoints"))),
      ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"],
    )
    self.assertRegex(outputs[1], r"checkpoint \S*copart-worker-checkpoints-\S*/ckpt-2")
    # (Other files may appear in the worker's TMPDIR, e.g. autograph's generated modules and,
    # under Bazel, their __pycache__; only the checkpoint dir must be gone.)
    leftover = [n for n in os.listdir(tmpdirs[1]) if n.startswith("copart-worker-checkpoints-")]
    self.assertEqual(leftover, [])
    self.assertEqual(len(re.findall(r"events\.out\.tfevents", " ".join(os.listdir(model_dir)))), 1)


if __name__ == "__main__":
  unittest.main()
