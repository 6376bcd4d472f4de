"""`python -m copart_tf.train` with --strategy=mirrored (two logical CPUs) and multi_worker.

Every run is a subprocess: the CPU must be split before TensorFlow initialises, and
MultiWorkerMirroredStrategy needs one process per worker. Everything is bounded by timeouts; on
failure the workers are killed.
"""

import json
import os
import re
import shutil
import signal
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
    flags = train_flags(
      self.data_dir, model_dir, strategy="multi_worker", batch_size=2, train_steps=4
    )
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
            # The chief writes each checkpoint 3 s late: the other worker must wait for it.
            env=env(
              TF_CONFIG=json.dumps(tf_config),
              TMPDIR=tmpdirs[-1],
              COPART_TEST_CHIEF_SAVE_DELAY="3",
            ),
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
    self.assertEqual(int(chief["step"]), 4)
    self.assertEqual(int(other["step"]), 4)
    final = os.path.join(model_dir, "checkpoints", "ckpt-4")
    self.assertEqual(str(chief["checkpoint"]), final)
    # Both workers' summaries name the chief's final checkpoint (was: the one before it).
    for index, output in enumerate(outputs):
      self.assertIn(f"checkpoint:  {final}\n", output, f"worker {index}:\n{output[-3000:]}")
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
      [
        "checkpoint",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "ckpt-4.data-00000-of-00001",
        "ckpt-4.index",
      ],
    )
    self.assertRegex(outputs[1], r"checkpoint \S*copart-worker-checkpoints-\S*/ckpt-4")
    # (Other files may appear in the worker's TMPDIR, e.g. autograph's generated modules and,
    # under Bazel, their __pycache__; only the checkpoint dir must be gone.)
    leftover = [n for n in os.listdir(tmpdirs[1]) if n.startswith("copart-worker-checkpoints-")]
    self.assertEqual(leftover, [])
    self.assertEqual(len(re.findall(r"events\.out\.tfevents", " ".join(os.listdir(model_dir)))), 1)


def read(path):
  with open(path, errors="replace") as f:
    return f.read()


def wait_for_text(path, pattern, proc, timeout):
  """Polls the log file `path` until `pattern` (a regex) appears; False if `proc` ends first."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path) and re.search(pattern, read(path)):
      return True
    time.sleep(0.5)
  return False


def wait_all(procs, timeout):
  """Waits up to `timeout` s for every process; True when all have exited."""
  deadline = time.time() + timeout
  while time.time() < deadline and any(p.poll() is None for p in procs):
    time.sleep(0.5)
  return all(p.poll() is not None for p in procs)


class StopAndTimeoutTest(unittest.TestCase):
  """Issue 19 §7: a missing worker is a bounded wait; SIGTERM / SIGINT stop cleanly, any time."""

  @classmethod
  def setUpClass(cls):
    cls.tmp = tempfile.mkdtemp(prefix="test_train_stop-")
    cls.data_dir = os.path.join(cls.tmp, "data")
    write_dataset(cls.data_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)

  def setUp(self):
    self.procs = []

  def tearDown(self):
    for proc in self.procs:  # only the processes this test started
      if proc.poll() is None:
        proc.kill()
      proc.wait(timeout=60)

  def start(self, name, flags, **env_extra):
    """Starts `python -m copart_tf.train`; stdout and stderr go to <tmp>/<name>.out / .err."""
    out, err = (os.path.join(self.tmp, f"{name}.{ext}") for ext in ("out", "err"))
    with open(out, "w") as stdout, open(err, "w") as stderr:
      proc = subprocess.Popen(
        [sys.executable, "-m", "copart_tf.train", *flags],
        stdout=stdout,
        stderr=stderr,
        env=env(**env_extra),
        cwd=self.tmp,
      )
    self.procs.append(proc)
    return proc, out, err

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

  @staticmethod
  def two_worker_configs():
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    configs = [
      json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      for index in range(2)
    ]
    return cluster["worker"], configs

  def test_missing_worker_fails_after_cluster_timeout_naming_it(self):
    addresses, configs = self.two_worker_configs()
    flags = train_flags(
      self.data_dir,
      os.path.join(self.tmp, "alone"),
      strategy="multi_worker",
      batch_size=2,
      cluster_timeout=3,
    )
    started = time.time()
    result = self.run_cli(flags, TF_CONFIG=configs[0])  # worker 1 never starts
    self.assertLess(time.time() - started, 120)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    lines = error_lines(result.stderr)
    self.assertEqual(len(lines), 1, result.stderr[-3000:])
    self.assertIn("--cluster_timeout=3", lines[0])
    self.assertIn(f"worker 1 at {addresses[1]}", lines[0])
    self.assertNotIn(addresses[0], lines[0])

  def test_sigterm_while_waiting_for_a_missing_worker_exits(self):
    _, configs = self.two_worker_configs()
    flags = train_flags(
      self.data_dir, os.path.join(self.tmp, "waiting"), strategy="multi_worker", batch_size=2
    )
    proc, _, err = self.start("waiting", flags, TF_CONFIG=configs[0])
    # Today's wait is announced; without it, give the start-up 60 s before the signal.
    wait_for_text(err, r"waiting up to \d+ s \(--cluster_timeout\)", proc, 60)
    self.assertIsNone(proc.poll(), read(err)[-3000:])
    proc.send_signal(signal.SIGTERM)
    self.assertTrue(wait_all([proc], 30), "still running 30 s after SIGTERM")
    self.assertEqual(proc.returncode, 128 + signal.SIGTERM, read(err)[-3000:])
    self.assertIn("interrupted: SIGTERM", read(err))
    self.assertNotIn("Traceback", read(err))

  def test_sigint_during_training_saves_a_checkpoint_and_resumes(self):
    model_dir = os.path.join(self.tmp, "interrupted")
    flags = train_flags(
      self.data_dir, model_dir, train_steps=100000, checkpoint_every=100000, image_every=100000
    )
    proc, out, err = self.start("interrupted", flags)
    self.assertTrue(wait_for_text(err, r"step 3/100000", proc, TIMEOUT), read(err)[-3000:])
    proc.send_signal(signal.SIGINT)
    self.assertTrue(wait_all([proc], 60), "still running 60 s after SIGINT")
    self.assertEqual(proc.returncode, 128 + signal.SIGINT, read(err)[-3000:])
    match = re.search(r"interrupted: SIGINT at step (\d+);", read(err))
    self.assertIsNotNone(match, read(err)[-3000:])
    step = int(match.group(1))
    self.assertGreaterEqual(step, 3)
    checkpoint = os.path.join(model_dir, "checkpoints", f"ckpt-{step}")
    self.assertTrue(os.path.exists(checkpoint + ".index"))
    self.assertIn(f"checkpoint:  {checkpoint}\n", read(out))
    self.assertNotIn("Traceback", read(err))

    resumed = self.run_cli(
      train_flags(self.data_dir, model_dir, train_steps=step + 1, checkpoint_every=100000)
    )
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    self.assertIn(f"resumed from {checkpoint} at step {step}", resumed.stderr)
    self.assertIn(f"ckpt-{step + 1}", resumed.stdout)

  def test_sigterm_to_one_worker_stops_both_at_one_step_with_a_checkpoint(self):
    model_dir = os.path.join(self.tmp, "multi_worker_stop")
    _, configs = self.two_worker_configs()
    flags = train_flags(
      self.data_dir,
      model_dir,
      strategy="multi_worker",
      batch_size=2,
      train_steps=100000,
      checkpoint_every=100000,
      image_every=100000,
    )
    workers = [self.start(f"stop{i}", flags, TF_CONFIG=configs[i]) for i in range(2)]
    procs = [proc for proc, _, _ in workers]
    (chief, chief_out, chief_err), (other, other_out, other_err) = workers
    started = wait_for_text(other_err, r"step 3/100000", other, TIMEOUT)
    self.assertTrue(started, read(other_err)[-3000:] + read(chief_err)[-3000:])
    other.send_signal(signal.SIGTERM)  # TensorFlow's own SIGTERM handler only logged it
    self.assertTrue(wait_all(procs, 90), "a worker is still running 90 s after SIGTERM")
    for proc, _, err in workers:
      self.assertEqual(proc.returncode, 128 + signal.SIGTERM, read(err)[-3000:])
      self.assertNotIn("Traceback", read(err))
    steps = [re.search(r"interrupted: .* at step (\d+);", read(err)) for _, _, err in workers]
    self.assertTrue(all(steps), read(chief_err)[-2000:] + read(other_err)[-2000:])
    self.assertEqual(steps[0].group(1), steps[1].group(1))
    self.assertIn("interrupted: SIGTERM at step", read(other_err))
    self.assertIn("interrupted: a signal to another worker at step", read(chief_err))
    checkpoint = os.path.join(model_dir, "checkpoints", f"ckpt-{steps[0].group(1)}")
    self.assertTrue(os.path.exists(checkpoint + ".index"))
    for out in (chief_out, other_out):
      self.assertIn(f"checkpoint:  {checkpoint}\n", read(out))

  def test_num_cpu_devices_zero_with_mirrored_fails_with_one_line(self):
    flags = train_flags(
      self.data_dir,
      os.path.join(self.tmp, "zero_cpus"),
      strategy="mirrored",
      num_cpu_devices=0,
    )
    result = self.run_cli(flags)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    lines = error_lines(result.stderr)
    self.assertEqual(len(lines), 1, result.stderr[-3000:])
    self.assertIn("--num_cpu_devices=0", lines[0])
    self.assertIn("--strategy=mirrored", lines[0])
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "zero_cpus", "checkpoints")))

  def test_num_cpu_devices_without_mirrored_is_a_warning(self):
    flags = train_flags(
      os.path.join(self.tmp, "no_such_data"), os.path.join(self.tmp, "cpus"), num_cpu_devices=2
    )
    result = self.run_cli(flags)  # fails on the missing data, after the warning
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertRegex(
      result.stderr,
      r"(?m)^W.*--num_cpu_devices=2 is ignored: it only applies to --strategy=mirrored",
    )


if __name__ == "__main__":
  unittest.main()
