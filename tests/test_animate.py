"""`python -m copart_tf.animate`, `copart_tf.apps.animation` and the export's ``animate`` signature.

One tiny randomly perturbed model (K=3, 64x64) is written as a training run dir and exported once
(with the ``animate`` signature). The command-line run (a separate Python) starts in setUpClass.
"""

import json
import os
import shutil
import tempfile

import app_fixtures
import imageio
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from copart_tf.apps import animation, media
from copart_tf.data import augment
from copart_tf.errors import ModelError
from copart_tf.export import saved_model as export_lib
from copart_tf.inference import Segmenter

K = 3
SIZE = 64
FRAMES = 10
FPS = 10.0


def _read_video(path):
  reader = imageio.get_reader(path)
  try:
    fps = reader.get_meta_data().get("fps")
    frames = [frame for frame in reader]
  finally:
    reader.close()
  return frames, fps


class AnimateTest(tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="copart_animate_test_")
    cls.run_dir = os.path.join(cls.tmp, "run")
    cls.model = app_fixtures.make_tiny_run_dir(cls.run_dir, num_parts=K, image_size=SIZE)
    cls.driving = app_fixtures.write_moving_shapes_video(
      os.path.join(cls.tmp, "in", "driving.mp4"), FRAMES, size=SIZE, fps=FPS
    )
    cls.source = os.path.join(cls.tmp, "in", "source.png")
    Image.fromarray(app_fixtures.moving_shapes_frame(40, 48, 80)).save(cls.source)
    cls.cli_missing_source = app_fixtures.start_cli(
      "copart_tf.animate",
      f"--model={cls.run_dir}",
      f"--source={os.path.join(cls.tmp, 'nothing.png')}",
      f"--driving={cls.driving}",
      f"--output={os.path.join(cls.tmp, 'cli_missing')}",
    )
    cls.export_dir = export_lib.export(cls.model, os.path.join(cls.tmp, "export"))
    cls.cli_export = app_fixtures.start_cli(
      "copart_tf.animate",
      f"--model={os.path.dirname(cls.export_dir)}",
      f"--source={cls.source}",
      f"--driving={cls.driving}",
      f"--output={os.path.join(cls.tmp, 'cli_export')}",
      "--gif",
      "--batch_size=4",
      "--panel_size=96",
    )

  @classmethod
  def tearDownClass(cls):
    for process in (cls.cli_missing_source, cls.cli_export):
      if process.poll() is None:
        process.kill()
        process.communicate()
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _inputs(self):
    source = np.asarray(Image.open(self.source))
    driving = np.stack(list(media.open_input(self.driving)))[:3]
    return source, driving

  # ------------------------------------------------------------------ the export's signature

  def test_export_has_the_animate_signature(self):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(self.export_dir, "saved_model.pb"), "rb") as f:
      proto.ParseFromString(f.read())
    signatures = proto.meta_graphs[0].signature_def
    for name in export_lib.SIGNATURES + export_lib.OPTIONAL_SIGNATURES:
      self.assertIn(name, signatures)
    animate = signatures[export_lib.ANIMATE]
    self.assertEqual(animate.method_name, "tensorflow/serving/predict")
    self.assertEqual(set(animate.inputs), {"source", "driving"})
    for key in ("source", "driving"):
      self.assertEqual(animate.inputs[key].dtype, tf.uint8.as_datatype_enum)
      self.assertEqual([d.size for d in animate.inputs[key].tensor_shape.dim], [-1, -1, -1, 3])
    self.assertEqual(set(animate.outputs), {"image", "part_labels"})
    self.assertEqual(animate.outputs["image"].dtype, tf.uint8.as_datatype_enum)
    with open(os.path.join(self.export_dir, "assets.extra", "copart_export.json")) as f:
      self.assertIn(export_lib.ANIMATE, json.load(f)["signatures"])
    # The existing signatures are unchanged: the Segmenter still loads the export.
    self.assertEqual(Segmenter.load(self.export_dir).part_names, self.model.part_names)

  def test_export_and_model_agree(self):
    source, driving = self._inputs()
    exported = animation.Animator.load(os.path.dirname(self.export_dir))
    self.assertEqual(exported.kind, "saved_model")
    in_memory = animation.Animator.from_model(self.model)
    a = exported.animate(source, driving)
    b = in_memory.animate(source, driving)
    self.assertEqual(a["image"].shape, (3, SIZE, SIZE, 3))
    self.assertEqual(a["image"].dtype, np.uint8)
    self.assertEqual(a["part_labels"].shape, (3, SIZE, SIZE))
    self.assertAllClose(a["image"], b["image"], atol=2)
    self.assertGreater(np.mean(a["part_labels"] == b["part_labels"]), 0.99)
    # Same as calling CoPartModel.animate on the model-size inputs.
    src = augment.resize_image(np.repeat(source[None], 3, axis=0), SIZE)
    drv = augment.resize_image(driving, SIZE)
    direct = self.model.animate(src, drv)
    expected = np.round(np.clip(direct["image"].numpy(), 0, 1) * 255)
    self.assertAllClose(b["image"], expected, atol=1)
    # Different driving frames give different results (the poses move the parts).
    self.assertGreater(np.abs(b["image"][0].astype(int) - b["image"][2].astype(int)).max(), 0)

  def test_signature_needs_equal_batches(self):
    computation = export_lib.ServingComputation(self.model)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "same batch size"):
      computation.animate(tf.zeros([2, 8, 8, 3], tf.uint8), tf.zeros([3, 8, 8, 3], tf.uint8))

  def test_export_without_animate_is_refused(self):
    module = tf.Module()
    module.f = tf.function(
      lambda dummy: {"x": dummy}, input_signature=[tf.TensorSpec([None], tf.int32)]
    )
    old = os.path.join(self.tmp, "old_export", "1")
    tf.saved_model.save(module, old, signatures={"metadata": module.f})
    with self.assertRaisesRegex(ModelError, "no 'animate' signature.*run dir"):
      animation.Animator.load(os.path.dirname(old))
    with self.assertRaisesRegex(ModelError, "no such directory"):
      animation.Animator.load(os.path.join(self.tmp, "missing"))
    with self.assertRaisesRegex(ModelError, "no saved_model.pb"):
      animation.Animator.load(os.path.join(self.tmp, "in"))

  # ------------------------------------------------------------------ files

  def test_animate_video_with_run_dir(self):
    animator = animation.Animator.load(self.run_dir)
    self.assertEqual(animator.kind, "checkpoint")
    out_dir = os.path.join(self.tmp, "run_dir_out")
    options = animation.AnimateOptions(gif=True, frames=True, parts=True, show_progress=False)
    result = animation.animate_video(animator, self.source, self.driving, out_dir, options)
    self.assertEqual(result["num_frames"], FRAMES)
    video, fps = _read_video(os.path.join(out_dir, "animation.mp4"))
    self.assertLen(video, FRAMES)
    self.assertAllClose(fps, FPS)
    height, width = video[0].shape[:2]
    self.assertEqual(width, 4 * SIZE)  # source | result | driving | result parts
    self.assertGreater(height, SIZE)  # caption bar on top
    gif, _ = _read_video(os.path.join(out_dir, "animation.gif"))
    self.assertLen(gif, FRAMES)
    self.assertLen(os.listdir(os.path.join(out_dir, "frames")), FRAMES)
    with open(os.path.join(out_dir, "animation.json")) as f:
      info = json.load(f)
    self.assertEqual(info["num_frames"], FRAMES)
    self.assertEqual(info["fps"], FPS)
    self.assertEqual(info["panels"], ["source", "result", "driving", "result parts"])
    self.assertEqual(info["frame_size"], [height, width])
    # The PNG's result panel is the model's output for that driving frame (batching may move a
    # value by one level).
    source, driving = self._inputs()
    expected = animator.animate(source, driving[2:3])["image"][0]
    frame = np.asarray(Image.open(os.path.join(out_dir, "frames", "000002.png")))
    self.assertAllClose(frame[height - SIZE :, SIZE : 2 * SIZE], expected, atol=1)

  # ------------------------------------------------------------------ command line

  def test_cli_with_export(self):
    code, out, err = app_fixtures.finish_cli(self.cli_export)
    self.assertEqual(code, 0, err[-3000:])
    self.assertIn(f"animated {FRAMES} frames", out)
    out_dir = os.path.join(self.tmp, "cli_export")
    video, fps = _read_video(os.path.join(out_dir, "animation.mp4"))
    self.assertLen(video, FRAMES)
    self.assertAllClose(fps, FPS)
    self.assertEqual(video[0].shape[1], 3 * 96)
    self.assertLen(_read_video(os.path.join(out_dir, "animation.gif"))[0], FRAMES)
    with open(os.path.join(out_dir, "animation.json")) as f:
      info = json.load(f)
    self.assertEqual(info["model_kind"], "saved_model")
    self.assertEqual(info["panels"], ["source", "result", "driving"])

  def test_cli_errors(self):
    code, _, err = app_fixtures.finish_cli(self.cli_missing_source)
    self.assertEqual(code, 2, err[-3000:])
    self.assertNotIn("Traceback", err)
    self.assertRegex(err.strip().splitlines()[-1], r"^error: .*nothing\.png does not exist")
    process = app_fixtures.start_cli("copart_tf.animate", f"--source={self.source}")
    code, _, err = app_fixtures.finish_cli(process)
    self.assertEqual(code, 2)
    self.assertEqual(
      err.strip().splitlines()[-1],
      "error: --model is required (a training run dir or an exported SavedModel)",
    )


if __name__ == "__main__":
  tf.test.main()
