"""The training CLI `python -m copart_tf.train` end to end, on a tiny synthetic dataset.

One shared scenario (setUpClass), so TensorFlow traces the train step as few times as possible:
1. `--flagfile=F --train_steps=20` (F has a column-0 comment and `--train_steps=3`) with a missing
   --data_dir and --synthesize_if_missing: generates the dataset, trains, and is SIGKILLed once a
   checkpoint exists and the run has gone past it.
2. The same command again: resumes from the last checkpoint, reaches step 20, exports a SavedModel
   and evaluates.
3. One more process runs `copart_tf.train.main` in-process for each bad command line, a
   checkpoint of another architecture and a diverging run (absl flags are global, so not in
   pytest's process).
The tests then check logs, files and TensorBoard events. `Progress` is unit-tested directly.
"""

import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

import numpy as np
from absl.testing import absltest
from tensorboard.compat.proto import event_pb2

from copart_tf.training import progress as progress_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420  # seconds per process; the machine is shared with a long training job
STEPS = 20
LOG_EVERY = 2
CHECKPOINT_EVERY = 2
IMAGE_EVERY = 10
# Resuming at STEPS with --learning_rate=inf: the loss of step STEPS+1 is still finite (computed
# before the update), the update makes the weights non-finite, the loss of STEPS+2 is NaN.
# checkpoint_every=2: no save at STEPS+1, the NaN loss stops the run at STEPS+2.
# checkpoint_every=1: the save at STEPS+1 would write the non-finite weights; must not.
DIVERGE_CASES = {"diverge_loss": 2, "diverge_weights": 1}

FLAGFILE = """\
# Tiny run for tests/test_train.py; this comment starts in column 0.
--data_dir={data_dir}
--synthesize_if_missing=humanoid_mocap
--synth_train_videos=2
--synth_test_videos=1
--synth_frames=4
--synth_supersample=1
--model_dir={model_dir}
--export_dir={export_dir}
--preset=tiny
--image_size=32
--num_parts=2
--batch_size=2
--train_steps=3
--log_every={log_every}
--checkpoint_every={checkpoint_every}
--image_every={image_every}
--vgg_weights=none
--eval_fit_frames_per_video=2
"""

# Runs `copart_tf.train.main` once per case in one interpreter: argv: spec.json out.json.
_RUNNER = textwrap.dedent(
  """
  import contextlib, io, json, os, sys, time, traceback

  from absl import flags

  from copart_tf import train
  from copart_tf.model import loading
  from copart_tf.model.copart_model import LOSS_TERMS

  spec = json.load(open(sys.argv[1]))
  results = {"loss_terms": list(LOSS_TERMS), "cases": {}}
  for name, args in spec["cases"]:
    flags.FLAGS.unparse_flags()
    err = io.StringIO()
    start = time.time()
    try:
      argv = flags.FLAGS(["copart_tf.train", *args])
      with contextlib.redirect_stderr(err):
        code = train.main(argv)
    except BaseException:
      code = None
      err.write(traceback.format_exc())
    results["cases"][name] = {"code": code, "stderr": err.getvalue(), "seconds": time.time() - start}
  try:
    model = loading.load_from_model_dir(spec["load_model_dir"])
    model_json = os.path.join(spec["load_model_dir"], loading.MODEL_CONFIG_FILE)
    results["load"] = {"weights": len(model.weights), "model_json": os.path.exists(model_json)}
  except Exception as error:
    results["load"] = {"error": f"{type(error).__name__}: {error}"}
  json.dump(results, open(sys.argv[2], "w"))
  """
)


def _env():
  env = dict(os.environ)
  env.pop("TF_CONFIG", None)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def read_events(path):
  """Yields the `Event` protos of a TensorBoard event file (TFRecord framing, CRCs unchecked)."""
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        return  # a record cut short by SIGKILL
      event = event_pb2.Event()
      event.ParseFromString(data)
      yield event


def tensor_value(tensor):
  if tensor.float_val:
    return float(tensor.float_val[0])
  return float(np.frombuffer(tensor.tensor_content, np.float32)[0])


def latest_checkpoint_number(checkpoint_dir):
  """The number of the checkpoint named in TF's `checkpoint` state file (None if absent)."""
  state = os.path.join(checkpoint_dir, "checkpoint")
  if not os.path.exists(state):
    return None
  with open(state) as f:
    match = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', f.read(), re.MULTILINE)
  return int(match.group(1)) if match else None


def file_digest(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def progress_steps(log, total):
  """Steps of the non-TTY progress lines `step N/total (x%) elapsed .. eta ..` in a log."""
  pattern = rf"progress\.py:\d+\] step (\d+)/{total} \(\s*[\d.]+%\) elapsed \S+ eta \S+"
  return [int(n) for n in re.findall(pattern, log)]


class TrainCliTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    cls.tmp = tempfile.mkdtemp(prefix="test_train-")
    cls.data_dir = os.path.join(cls.tmp, "data")
    cls.model_dir = os.path.join(cls.tmp, "run")
    cls.export_dir = os.path.join(cls.tmp, "export")
    cls.flagfile = os.path.join(cls.tmp, "tiny.cfg")
    with open(cls.flagfile, "w") as f:
      f.write(
        FLAGFILE.format(
          data_dir=cls.data_dir,
          model_dir=cls.model_dir,
          export_dir=cls.export_dir,
          log_every=LOG_EVERY,
          checkpoint_every=CHECKPOINT_EVERY,
          image_every=IMAGE_EVERY,
        )
      )
    cls.command = [
      sys.executable,
      "-m",
      "copart_tf.train",
      f"--flagfile={cls.flagfile}",
      f"--train_steps={STEPS}",
    ]
    try:
      for phase in (cls._kill_first_run, cls._resume, cls._run_cases):
        start = time.time()
        phase()
        print(f"{phase.__name__}: {time.time() - start:.0f} s", file=sys.stderr)
    except BaseException:
      shutil.rmtree(cls.tmp, ignore_errors=True)
      raise

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)

  @classmethod
  def _kill_first_run(cls):
    """Starts the run and SIGKILLs it once ckpt-2 is written and 2 more steps are done."""
    log_path = os.path.join(cls.tmp, "first_run.log")
    with open(log_path, "w") as log:
      proc = subprocess.Popen(
        cls.command, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=cls.tmp
      )
    try:
      deadline = time.time() + TIMEOUT
      while time.time() < deadline and proc.poll() is None:
        with open(log_path) as f:
          text = f.read()
        if (
          re.search(r"checkpoint \S+/ckpt-2$", text, re.MULTILINE)
          and max(progress_steps(text, STEPS), default=0) >= 2 + CHECKPOINT_EVERY
        ):
          break
        time.sleep(0.05)
    finally:
      exited = proc.poll()
      if exited is None:
        proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
    with open(log_path) as f:
      cls.first_log = f.read()
    if exited is not None or proc.returncode != -signal.SIGKILL:
      raise AssertionError(
        f"the first run was not killed mid-training (exit code {exited}):\n{cls.first_log[-3000:]}"
      )
    cls.killed_at = max(progress_steps(cls.first_log, STEPS))
    cls.resume_step = latest_checkpoint_number(os.path.join(cls.model_dir, "checkpoints"))

  @classmethod
  def _resume(cls):
    cls.resumed = subprocess.run(
      cls.command,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
      env=_env(),
      cwd=cls.tmp,
      check=False,
    )
    if cls.resumed.returncode != 0:
      raise AssertionError(f"the resumed run failed:\n{cls.resumed.stderr[-3000:]}")

  @classmethod
  def _run_cases(cls):
    """Bad command lines, another architecture, divergence: `main` in one more process."""
    a_file = os.path.join(cls.tmp, "a_file")
    with open(a_file, "w") as f:
      f.write("not a directory")
    cls.other_arch_dir = os.path.join(cls.tmp, "other_arch")
    shutil.copytree(os.path.join(cls.model_dir, "checkpoints"), cls.other_arch_dir + "/checkpoints")
    shutil.copy(os.path.join(cls.model_dir, "config.json"), cls.other_arch_dir)
    for name in DIVERGE_CASES:  # copies of the finished run, resumed with an infinite rate
      shutil.copytree(
        os.path.join(cls.model_dir, "checkpoints"), os.path.join(cls.tmp, name, "checkpoints")
      )
      shutil.copy(os.path.join(cls.model_dir, "config.json"), os.path.join(cls.tmp, name))
    cls.corrupt_dir = os.path.join(cls.tmp, "corrupt")
    os.makedirs(cls.corrupt_dir)
    with open(os.path.join(cls.corrupt_dir, "config.json"), "w") as f:
      f.write('{"num_parts": 2, "pres')  # what a killed writer could leave behind

    base = [f"--flagfile={cls.flagfile}", f"--train_steps={STEPS}"]
    scratch = os.path.join(cls.tmp, "scratch")
    cases = [
      ("unknown_preset", [*base, f"--model_dir={scratch}", "--preset=huge"]),
      ("zero_parts", [*base, f"--model_dir={scratch}", "--num_parts=0"]),
      (
        "missing_data",
        [
          *base,
          f"--model_dir={scratch}",
          f"--data_dir={cls.tmp}/no_such_data",
          "--synthesize_if_missing=",
        ],
      ),
      ("unwritable_model_dir", [*base, f"--model_dir={a_file}/run"]),
      ("unknown_strategy", [*base, f"--model_dir={scratch}", "--strategy=tpu_pod"]),
      ("positional_argument", [*base, f"--model_dir={scratch}", "train_steps=5"]),
      ("corrupt_config", [*base, f"--model_dir={cls.corrupt_dir}"]),
      ("other_num_parts", [*base, f"--model_dir={cls.other_arch_dir}", "--num_parts=3"]),
      ("other_preset", [*base, f"--model_dir={cls.other_arch_dir}", "--preset=small"]),
    ]
    for name, checkpoint_every in DIVERGE_CASES.items():
      cases.append(
        (
          name,
          [
            *base,
            f"--model_dir={os.path.join(cls.tmp, name)}",
            f"--train_steps={STEPS + 4}",
            f"--checkpoint_every={checkpoint_every}",
            "--learning_rate=inf",
            "--export_dir=",
          ],
        )
      )
    spec_path = os.path.join(cls.tmp, "cases.json")
    out_path = os.path.join(cls.tmp, "cases_out.json")
    with open(spec_path, "w") as f:
      json.dump({"cases": cases, "load_model_dir": cls.model_dir}, f)
    runner = subprocess.run(
      [sys.executable, "-c", _RUNNER, spec_path, out_path],
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
      env=_env(),
      cwd=cls.tmp,
      check=False,
    )
    if runner.returncode != 0 or not os.path.exists(out_path):
      raise AssertionError(f"the case runner failed:\n{runner.stderr[-3000:]}")
    cls.runner_log = runner.stderr
    with open(out_path) as f:
      cls.cases = json.load(f)

  # --- 1. flagfile + override -----------------------------------------------------------------
  def test_flagfile_values_and_command_line_override(self):
    with open(os.path.join(self.model_dir, "config.json")) as f:
      saved = json.load(f)
    self.assertEqual(saved["train_steps"], STEPS)  # the later flag wins over the flagfile's 3
    self.assertEqual(saved["num_parts"], 2)
    self.assertEqual(saved["preset"], "tiny")
    self.assertEqual(saved["log_every"], LOG_EVERY)
    self.assertIn(f"step {STEPS}/{STEPS} ", self.resumed.stderr)

  # --- 4. checkpoint, SIGKILL, resume -----------------------------------------------------------
  def test_killed_run_resumes_from_last_checkpoint(self):
    self.assertIsNotNone(self.resume_step)
    self.assertGreaterEqual(self.resume_step, 2)
    self.assertEqual(self.resume_step % CHECKPOINT_EVERY, 0)
    self.assertLessEqual(self.resume_step, self.killed_at)
    checkpoint_dir = os.path.join(self.model_dir, "checkpoints")
    self.assertRegex(
      self.resumed.stderr,
      rf"resumed from {re.escape(checkpoint_dir)}/ckpt-{self.resume_step} at step "
      rf"{self.resume_step}\n",
    )
    # The step counter continues: the resumed run logs from the next interval on, up to the end.
    steps = progress_steps(self.resumed.stderr, STEPS)
    self.assertEqual(steps[0], self.resume_step + LOG_EVERY)
    self.assertEqual(steps[-1], STEPS)
    self.assertEqual(latest_checkpoint_number(checkpoint_dir), STEPS)
    self.assertTrue(os.path.exists(os.path.join(checkpoint_dir, f"ckpt-{STEPS}.index")))
    self.assertIn(f"checkpoint:  {checkpoint_dir}/ckpt-{STEPS}", self.resumed.stdout)
    self.assertNotIn("resumed from", self.first_log)

  def test_run_dir_loads_for_inference(self):
    self.assertIsNone(self.cases["load"].get("error"))
    self.assertGreater(self.cases["load"]["weights"], 10)
    self.assertTrue(self.cases["load"]["model_json"])  # the trainer wrote model.get_config()

  # --- 8. progress: one log line per interval without a TTY ----------------------------------
  def test_progress_lines_once_per_interval_without_tty(self):
    steps = progress_steps(self.resumed.stderr, STEPS)
    self.assertEqual(steps, list(range(self.resume_step + LOG_EVERY, STEPS + 1, LOG_EVERY)))
    self.assertNotIn("\r", self.resumed.stderr)

  # --- 7. TensorBoard ---------------------------------------------------------------------------
  def test_tensorboard_events(self):
    files = [f for f in os.listdir(self.model_dir) if f.startswith("events.out.tfevents.")]
    self.assertLen(files, 2)  # one per process
    seen = {}  # tag -> {plugin, steps, values}
    for name in files:
      for event in read_events(os.path.join(self.model_dir, name)):
        for value in event.summary.value:
          entry = seen.setdefault(
            value.tag, {"plugin": value.metadata.plugin_data.plugin_name, "steps": {}}
          )
          entry["steps"][event.step] = value.tensor
    log_steps = set(range(self.resume_step + LOG_EVERY, STEPS + 1, LOG_EVERY))
    scalars = [f"loss/{term}" for term in self.cases["loss_terms"]] + [
      "train/learning_rate",
      "train/steps_per_sec",
      "train/images_per_sec",
    ]
    for tag in scalars:
      self.assertIn(tag, seen)
      self.assertEqual(seen[tag]["plugin"], "scalars", tag)
      self.assertLessEqual(log_steps, set(seen[tag]["steps"]), tag)
      for step, tensor in seen[tag]["steps"].items():
        self.assertTrue(np.isfinite(tensor_value(tensor)), f"{tag} at step {step}")
    self.assertAlmostEqual(tensor_value(seen["train/learning_rate"]["steps"][STEPS]), 5e-5)
    self.assertGreater(tensor_value(seen["train/steps_per_sec"]["steps"][STEPS]), 0.0)
    image_steps = set(range(self.resume_step + 1, STEPS + 1)) & {IMAGE_EVERY, 2 * IMAGE_EVERY}
    images = [tag for tag in seen if tag.startswith("parts/")]
    self.assertLen(images, 1)
    self.assertEqual(seen[images[0]]["plugin"], "images")
    self.assertLessEqual(image_steps, set(seen[images[0]]["steps"]))
    histograms = [tag for tag in seen if tag.startswith("poses/")]
    self.assertGreaterEqual(len(histograms), 2)
    for tag in histograms:
      self.assertEqual(seen[tag]["plugin"], "histograms", tag)
      self.assertLessEqual(image_steps, set(seen[tag]["steps"]), tag)

  # --- 9. synthesize, evaluate, export ----------------------------------------------------------
  def test_synthesized_dataset(self):
    self.assertIn("is missing: generating the synthetic humanoid_mocap dataset", self.first_log)
    self.assertNotIn("is missing", self.resumed.stderr)
    for split, videos in (("train", 2), ("test", 1)):
      names = sorted(os.listdir(os.path.join(self.data_dir, split)))
      self.assertLen(names, videos)
      for name in names:
        self.assertLen(os.listdir(os.path.join(self.data_dir, split, name)), 4)
        label = os.path.join(self.data_dir, "labels", split, name + ".npz")
        self.assertTrue(os.path.exists(label), label)
    self.assertTrue(os.path.exists(os.path.join(self.data_dir, "meta.json")))

  def test_evaluation_at_end(self):
    metrics_path = os.path.join(self.model_dir, "eval", "metrics.json")
    self.assertTrue(os.path.exists(metrics_path))
    with open(metrics_path) as f:
      self.assertTrue(json.load(f))
    self.assertIn("evaluation:", self.resumed.stdout)
    self.assertIn("part IoU", self.resumed.stdout)

  def test_saved_model_export_at_end(self):
    versions = [v for v in os.listdir(self.export_dir) if v.isdigit()]
    self.assertLen(versions, 1)
    version_dir = os.path.join(self.export_dir, versions[0])
    self.assertTrue(os.path.exists(os.path.join(version_dir, "saved_model.pb")))
    self.assertIn(f"SavedModel:  {version_dir}", self.resumed.stdout)

  # --- 5. bad flags -------------------------------------------------------------------------------
  def assert_fails_with_one_line(self, case, *fragments):
    result = self.cases["cases"][case]
    self.assertEqual(result["code"], 2, result["stderr"][-3000:])
    self.assertNotIn("Traceback", result["stderr"])
    lines = result["stderr"].strip().splitlines()
    self.assertLen(lines, 1, result["stderr"])
    self.assertTrue(lines[0].startswith("error: "), lines[0])
    for fragment in fragments:
      self.assertIn(fragment, lines[0])
    return lines[0]

  def test_unknown_preset(self):
    self.assert_fails_with_one_line("unknown_preset", "--preset='huge'", "tiny")

  def test_zero_parts(self):
    self.assert_fails_with_one_line("zero_parts", "--num_parts=0")

  def test_missing_data_dir(self):
    self.assert_fails_with_one_line(
      "missing_data", f"--data_dir={self.tmp}/no_such_data", "--synthesize_if_missing"
    )
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "no_such_data")))

  def test_unwritable_model_dir(self):
    self.assert_fails_with_one_line("unwritable_model_dir", "--model_dir=", "not writable")

  def test_unknown_strategy(self):
    self.assert_fails_with_one_line("unknown_strategy", "--strategy='tpu_pod'", "mirrored")

  def test_positional_argument(self):
    self.assert_fails_with_one_line("positional_argument", "train_steps=5")

  def test_corrupt_config_json(self):
    self.assert_fails_with_one_line("corrupt_config", "config.json")

  def test_bad_flags_fail_before_training(self):
    for case in ("unknown_preset", "zero_parts", "missing_data", "unknown_strategy"):
      self.assertLess(self.cases["cases"][case]["seconds"], 30, case)
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "scratch", "checkpoints")))

  # --- 4b. a checkpoint of another architecture -----------------------------------------------
  def test_checkpoint_of_other_num_parts(self):
    self.assert_fails_with_one_line(
      "other_num_parts", "config.json", "--num_parts=2", "--num_parts=3"
    )

  def test_checkpoint_of_other_preset(self):
    self.assert_fails_with_one_line("other_preset", "config.json", "--preset=tiny", "small")

  # --- 6. NaN / Inf ----------------------------------------------------------------------------
  def assert_diverged_and_kept_last_good_checkpoint(self, case, message):
    line = self.assert_fails_with_one_line(case, message, "--learning_rate")
    checkpoint_dir = os.path.join(self.tmp, case, "checkpoints")
    self.assertIn(f"{checkpoint_dir}/ckpt-{STEPS}", line)
    self.assertEqual(latest_checkpoint_number(checkpoint_dir), STEPS)
    saved = [int(n) for n in re.findall(r"ckpt-(\d+)\.index", " ".join(os.listdir(checkpoint_dir)))]
    self.assertEqual(max(saved), STEPS)
    data = f"ckpt-{STEPS}.data-00000-of-00001"
    self.assertEqual(
      file_digest(os.path.join(checkpoint_dir, data)),
      file_digest(os.path.join(self.model_dir, "checkpoints", data)),
    )

  def test_nan_loss_stops_and_keeps_last_good_checkpoint(self):
    self.assert_diverged_and_kept_last_good_checkpoint(
      "diverge_loss", f"the loss became nan at step {STEPS + 2}"
    )

  def test_non_finite_weights_are_never_saved(self):
    self.assert_diverged_and_kept_last_good_checkpoint(
      "diverge_weights", f"the weights became non-finite at step {STEPS + 1}"
    )


class _FakeTty(io.StringIO):
  def isatty(self):
    return True


class _FakeClock:
  """Stands in for the `time` module of `progress`; `now` is set by the test."""

  def __init__(self, now=0.0):
    self.now = now

  def time(self):
    return self.now


class ProgressTest(absltest.TestCase):
  def test_tty_bar_is_redrawn_in_place_with_eta(self):
    stream, clock = _FakeTty(), _FakeClock(100.0)
    with mock.patch.object(progress_lib, "time", clock), self.assertNoLogs("absl", level="INFO"):
      bar = progress_lib.Progress(10, start_step=0, log_every=1, stream=stream)
      clock.now = 102.0
      bar.update(1, "loss 1.5")  # 2 s per step: 9 steps left -> eta 0:18
      clock.now = 104.0
      bar.update(2, "loss 1.4")
      clock.now = 110.0
      bar.update(10, "loss 1.0")
      bar.close()
    text = stream.getvalue()
    draws = text.split("\r")[1:]
    self.assertLen(draws, 3)
    self.assertTrue(text.startswith("\r["))
    self.assertIn("1/10", draws[0])
    self.assertIn("0:02<0:18", draws[0])
    self.assertIn("loss 1.5", draws[0])
    self.assertIn("0:04<0:16", draws[1])
    self.assertIn("[" + "#" * 30 + "] 10/10 100.0%", draws[2])
    self.assertNotIn("\n", text[:-1])
    self.assertTrue(text.endswith("\n"))

  def test_without_tty_one_log_line_per_interval(self):
    stream = io.StringIO()
    with self.assertLogs("absl", level="INFO") as logs:
      bar = progress_lib.Progress(10, start_step=0, log_every=3, stream=stream)
      for step in range(1, 11):
        bar.update(step, f"loss {step}")
      bar.close()
    self.assertEqual(stream.getvalue(), "")
    messages = [record.getMessage() for record in logs.records]
    self.assertEqual(
      [int(re.match(r"step (\d+)/10 ", m).group(1)) for m in messages], [3, 6, 9, 10]
    )
    self.assertTrue(all(" eta " in m for m in messages), messages)

  def test_eta_counts_from_the_resumed_step(self):
    clock = _FakeClock(0.0)
    with mock.patch.object(progress_lib, "time", clock):
      bar = progress_lib.Progress(100, start_step=50, log_every=10, stream=io.StringIO())
      clock.now = 10.0
      self.assertAlmostEqual(bar.eta(60), 40.0)  # 1 s per step since the resume, 40 left

  def test_format_duration(self):
    self.assertEqual(progress_lib.format_duration(65), "1:05")
    self.assertEqual(progress_lib.format_duration(3725), "1:02:05")
    self.assertEqual(progress_lib.format_duration(-3), "0:00")


class WaitForDataTest(absltest.TestCase):
  """Non-chief workers wait for the chief's synthetic dataset instead of racing it."""

  def _config(self, data_dir, synthesize):
    from copart_tf.training import config as config_lib

    return config_lib.TrainConfig(data_dir=data_dir, synthesize_if_missing=synthesize)

  def test_returns_once_the_chief_has_renamed_the_dataset_into_place(self):
    import threading

    from copart_tf.training import trainer

    root = os.path.join(tempfile.mkdtemp(), "humanoid")
    config = self._config(root, "humanoid_mocap")
    timer = threading.Timer(0.3, lambda: os.makedirs(os.path.join(root, "train")))
    timer.start()
    start = time.monotonic()
    trainer.wait_for_data(config, timeout_s=30, poll_s=0.05)
    timer.join()
    self.assertGreaterEqual(time.monotonic() - start, 0.25)
    self.assertTrue(os.path.isdir(os.path.join(root, "train")))

  def test_times_out_with_a_clear_message(self):
    from copart_tf.errors import DataError
    from copart_tf.training import trainer

    config = self._config(os.path.join(tempfile.mkdtemp(), "x"), "humanoid_mocap")
    with self.assertRaisesRegex(DataError, "did not generate the dataset"):
      trainer.wait_for_data(config, timeout_s=0.1, poll_s=0.02)

  def test_missing_data_without_synthesis_fails_at_once(self):
    from copart_tf.errors import ConfigError
    from copart_tf.training import trainer

    config = self._config(os.path.join(tempfile.mkdtemp(), "x"), "")
    with self.assertRaisesRegex(ConfigError, "no such dataset"):
      trainer.wait_for_data(config, timeout_s=30)


if __name__ == "__main__":
  absltest.main()


class EndOfRunEvaluationTest(absltest.TestCase):
  """The evaluation `train` runs after the last step, when the dataset cannot be evaluated."""

  def test_no_labels_is_a_warning_that_says_why(self):
    from PIL import Image

    from copart_tf.model.copart_model import CoPartModel
    from copart_tf.training import config as config_lib
    from copart_tf.training import trainer

    root = tempfile.mkdtemp()
    for split in ("train", "test"):
      folder = os.path.join(root, split, "clip")
      os.makedirs(folder)
      for t in range(2):
        Image.new("RGB", (16, 16), (t * 90, 40, 200)).save(os.path.join(folder, f"{t:05d}.png"))
    config = config_lib.TrainConfig(
      data_dir=root, model_dir=os.path.join(root, "run"), evaluate_at_end=True, export_dir=""
    )
    # The evaluation fails on the data before the model is called (so it is never built).
    model = CoPartModel(config.num_parts, preset="tiny", image_size=config.image_size)
    with self.assertLogs("absl", level="INFO") as logs:
      out = trainer._finish(config, model)
    self.assertNotIn("evaluation", out)
    skipped = [r for r in logs.records if "evaluation skipped" in r.getMessage()]
    self.assertLen(skipped, 1, [r.getMessage() for r in logs.records])
    self.assertEqual(skipped[0].levelname, "WARNING")
    self.assertIn("no ground truth", skipped[0].getMessage())
    self.assertIn(os.path.join(root, "labels"), skipped[0].getMessage())
