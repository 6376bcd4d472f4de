"""SavedModel export: layout, versions, signatures, core ops only, fresh-process reload, Segmenter.

One tiny model (K=3, 64x64, weights perturbed with a fixed seed so part poses are not trivial) is
exported once per class; the checks that need a separate Python (a fresh TensorFlow-only process,
saved_model_cli) start right after the export and run while the in-process tests go on.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from copart_tf.errors import DataError, ModelError
from copart_tf.export import saved_model as export_lib
from copart_tf.inference import Segmenter
from copart_tf.model import loading
from copart_tf.model.copart_model import CoPartModel

NAMES = ["background", "head", "arms", "legs"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Child Pythons find copart_tf / serving from the source tree even without an editable install.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
SUBPROCESS_TIMEOUT = 300

# Runs in a fresh interpreter that imports TensorFlow only (never copart_tf): the export must be
# self-contained, exactly as tensorflow_model_server sees it.
FRESH_SCRIPT = textwrap.dedent(
  """
  import json, sys
  import numpy as np
  import tensorflow as tf

  version_dir, inputs_path, out_path = sys.argv[1:4]
  loaded = tf.saved_model.load(version_dir)
  data = np.load(inputs_path, allow_pickle=True)
  default = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
  odd = loaded.signatures["serving_default"](images=tf.constant(data["odd"]))
  encoded = loaded.signatures["serve_encoded"](images=tf.constant(list(data["pngs"])))
  meta = loaded.signatures["metadata"](dummy=tf.zeros([2], tf.int32))
  try:
    loaded.signatures["serving_default"](images=tf.zeros([1, 4097, 2, 3], tf.uint8))
    too_large = "no error"
  except tf.errors.InvalidArgumentError as error:
    too_large = "InvalidArgumentError: " + str(error.message)[:1000]
  arrays = {"default_" + k: v.numpy() for k, v in default.items()}
  arrays.update({"odd_" + k: v.numpy() for k, v in odd.items()})
  arrays.update({"encoded_" + k: v.numpy() for k, v in encoded.items()})
  np.savez(out_path, **arrays)
  print(json.dumps({
    "copart_imported": sorted(m for m in sys.modules if m.startswith(("copart_tf", "serving"))),
    "part_names": [n.decode() for n in meta["part_names"].numpy()[1]],
    "num_parts": int(meta["num_parts"].numpy()[0]),
    "image_size": int(meta["image_size"].numpy()[0]),
    "too_large": too_large,
  }))
  """
)


def make_model(seed=0, part_names=None):
  """Tiny CoPartModel with every weight perturbed (fixed seed), so poses are not trivial."""
  keras.utils.set_random_seed(seed)
  model = CoPartModel(num_parts=3, preset="tiny", image_size=64, part_names=part_names)
  model.build()
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    noise = rng.normal(0.0, 0.05, variable.shape).astype(np.float32)
    variable.assign(variable.numpy() + noise)
  return model


def make_images(seed=1):
  """Smooth random images (blobs, so labels are not pure noise): uint8 [3, 64, 64, 3]."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.float32)
  big = tf.image.resize(small, [64, 64], method="bilinear").numpy()
  return np.clip(big, 0, 255).astype(np.uint8)


def _png(image):
  return tf.io.encode_png(image).numpy()


class ExportTest(tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="copart_export_test_")
    cls.base = os.path.join(cls.tmp, "exports", "copart")
    cls.model = make_model(part_names=NAMES)
    cls.path = export_lib.export(cls.model, cls.base, include_masks=True)
    cls.segmenter = Segmenter.from_model(cls.model, include_masks=True)
    cls.images = make_images()
    rng = np.random.default_rng(2)
    cls.odd = rng.integers(0, 256, (2, 37, 90, 3), dtype=np.uint8)
    cls.pngs = [_png(cls.images[0]), _png(cls.odd[1])]
    cls.inputs_path = os.path.join(cls.tmp, "inputs.npz")
    pngs = np.array(cls.pngs, dtype=object)
    np.savez(cls.inputs_path, images=cls.images, odd=cls.odd, pngs=pngs)
    cls.fresh_out = os.path.join(cls.tmp, "fresh.npz")
    # Separate processes: they start now and run while the in-process tests go on.
    cls.fresh = subprocess.Popen(
      [sys.executable, "-c", FRESH_SCRIPT, cls.path, cls.inputs_path, cls.fresh_out],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=cls.tmp,
    )
    cli = shutil.which("saved_model_cli") or os.path.join(
      os.path.dirname(sys.executable), "saved_model_cli"
    )
    if not os.path.isfile(cli):  # e.g. under Bazel: the same tool as a module
      cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    cls.cli = subprocess.Popen(
      ([cli] if isinstance(cli, str) else cli) + ["show", "--all", "--dir", cls.path],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )

  @classmethod
  def tearDownClass(cls):
    for proc in (cls.fresh, cls.cli):
      if proc.poll() is None:
        proc.kill()
      proc.communicate()
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _in_memory(self, images):
    return self.segmenter.segment(images)

  # ------------------------------------------------------------------ layout and versions

  def test_layout(self):
    self.assertEqual(self.path, os.path.join(self.base, "1"))
    for rel in (
      "saved_model.pb",
      "variables/variables.index",
      "assets/part_names.txt",
      "assets.extra/tf_serving_warmup_requests",
      "assets.extra/copart_export.json",
    ):
      self.assertTrue(os.path.isfile(os.path.join(self.path, rel)), rel)
    with open(os.path.join(self.path, "assets", "part_names.txt")) as f:
      self.assertEqual(f.read().splitlines(), NAMES)
    with open(os.path.join(self.path, "assets.extra", "copart_export.json")) as f:
      info = json.load(f)
    self.assertEqual(info["part_names"], NAMES)
    self.assertTrue(info["include_masks"])
    # No temporary directory is left next to the versions.
    self.assertEqual(os.listdir(self.base), ["1"])

  def test_warmup_records(self):
    path = os.path.join(self.path, "assets.extra", "tf_serving_warmup_requests")
    requests = export_lib.read_warmup_file(path)
    self.assertEqual([r.model_spec.signature_name for r in requests], list(export_lib.SIGNATURES))
    images = tf.make_ndarray(requests[0].inputs["images"])
    self.assertEqual(images.shape, (1, 64, 64, 3))
    self.assertEqual(images.dtype, np.uint8)
    self.assertEqual(requests[0].model_spec.name, "copart")

  def test_existing_version_is_refused(self):
    with self.assertRaisesRegex(ModelError, "already exists"):
      export_lib.export(self.model, self.base, version=1)

  def test_version_helpers(self):
    base = os.path.join(self.tmp, "versions")
    self.assertEqual(export_lib.list_versions(base), [])
    for name in ("3", "10", "7"):
      os.makedirs(os.path.join(base, name))
      open(os.path.join(base, name, "saved_model.pb"), "wb").close()
    os.makedirs(os.path.join(base, "11"))  # no saved_model.pb: not a version
    os.makedirs(os.path.join(base, ".tmp-export-x"))  # an export in progress
    self.assertEqual(export_lib.list_versions(base), [3, 7, 10])
    self.assertEqual(export_lib.next_version(base), 11)
    self.assertEqual(export_lib.next_version(os.path.join(self.tmp, "nothing")), 1)
    self.assertEqual(export_lib.resolve_saved_model_dir(base), (os.path.join(base, "10"), 10))
    self.assertEqual(
      export_lib.resolve_saved_model_dir(os.path.join(base, "7")), (os.path.join(base, "7"), 7)
    )
    with self.assertRaises(ModelError):
      export_lib.resolve_saved_model_dir(os.path.join(base, "11"))

  # ------------------------------------------------------------------ signatures and ops

  def _meta_graph(self):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
      proto.ParseFromString(f.read())
    return proto.meta_graphs[0]

  def test_signature_defs(self):
    signatures = self._meta_graph().signature_def
    for name in export_lib.SIGNATURES:
      self.assertIn(name, signatures)
      self.assertEqual(signatures[name].method_name, "tensorflow/serving/predict")
    default = signatures["serving_default"]
    self.assertEqual(list(default.inputs), ["images"])
    self.assertEqual(default.inputs["images"].dtype, tf.uint8.as_datatype_enum)
    self.assertEqual([d.size for d in default.inputs["images"].tensor_shape.dim], [-1, -1, -1, 3])
    self.assertEqual(
      set(default.outputs),
      {"part_labels", "part_centers", "part_affines", "foreground_fraction", "part_masks"},
    )
    self.assertEqual(default.outputs["part_labels"].dtype, tf.uint8.as_datatype_enum)
    encoded = signatures["serve_encoded"]
    self.assertEqual(encoded.inputs["images"].dtype, tf.string.as_datatype_enum)
    self.assertIn("image_sizes", encoded.outputs)
    meta = signatures["metadata"]
    self.assertEqual(list(meta.inputs), ["dummy"])
    self.assertEqual(set(meta.outputs), {"part_names", "num_parts", "image_size", "max_image_side"})

  def test_only_core_ops(self):
    graph = self._meta_graph().graph_def
    functions = {f.signature.name for f in graph.library.function}
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
      ops |= {node.op for node in function.node_def}
    ops -= functions
    self.assertIn("Conv2D", ops)
    self.assertIn("DecodeImage", ops)
    self.assertEqual(sorted(op for op in ops if op_def_registry.get(op) is None), [])
    self.assertFalse([op for op in ops if ">" in op], "custom (namespaced) ops in the graph")

  def test_saved_model_cli_show(self):
    out, err = self.cli.communicate(timeout=SUBPROCESS_TIMEOUT)
    self.assertEqual(self.cli.returncode, 0, err[-2000:])
    for name in export_lib.SIGNATURES:
      self.assertIn(f"signature_def['{name}']", out)
    self.assertIn("inputs['images'] tensor_info:\n        dtype: DT_UINT8", out)
    self.assertIn("inputs['images'] tensor_info:\n        dtype: DT_STRING", out)
    listed = out.split("contains the following ops:", 1)[1].split("}", 1)[0]
    ops = {op.strip().strip("'") for op in listed.strip().lstrip("{").split(",")}
    self.assertIn("Conv2D", ops)
    self.assertEqual(sorted(op for op in ops if op_def_registry.get(op) is None), [])

  # ------------------------------------------------------------------ outputs

  def test_fresh_process_matches_in_memory(self):
    out, err = self.fresh.communicate(timeout=SUBPROCESS_TIMEOUT)
    self.assertEqual(self.fresh.returncode, 0, err[-3000:])
    report = json.loads(out.strip().splitlines()[-1])
    self.assertEqual(report["copart_imported"], [])
    self.assertEqual(report["part_names"], NAMES)
    self.assertEqual((report["num_parts"], report["image_size"]), (3, 64))
    self.assertStartsWith(report["too_large"], "InvalidArgumentError")
    self.assertIn("between 1 and 4096", report["too_large"])
    fresh = np.load(self.fresh_out)

    mine = self._in_memory(self.images)
    self.assertAllEqual(fresh["default_part_labels"], mine["part_labels"])
    self.assertEqual(fresh["default_part_labels"].dtype, np.uint8)
    self.assertAllClose(fresh["default_part_centers"], mine["part_centers"], atol=1e-4)
    self.assertAllClose(fresh["default_part_affines"], mine["part_affines"], atol=1e-4)
    self.assertAllClose(fresh["default_foreground_fraction"], mine["foreground_fraction"])
    self.assertEqual(fresh["default_part_masks"].shape, (3, 64, 64, 4))
    self.assertEqual(fresh["default_part_masks"].dtype, np.uint8)
    # More than one label in use, and centres that differ per part (the model is not trivial).
    self.assertGreater(len(np.unique(mine["part_labels"])), 1)
    self.assertGreater(np.ptp(mine["part_centers"][0, :, 0]), 0.1)

    # Raw model at its own size: the export adds nothing but uint8 handling and pixel units.
    raw = self.model(tf.image.convert_image_dtype(self.images, tf.float32))
    self.assertAllEqual(fresh["default_part_labels"], raw["part_labels"].numpy())
    centres_px = (raw["centers"].numpy() + 1.0) * 64 / 2.0 - 0.5
    self.assertAllClose(fresh["default_part_centers"], centres_px, atol=1e-4)

    odd = self._in_memory(self.odd)
    self.assertEqual(fresh["odd_part_labels"].shape, (2, 37, 90))
    self.assertAllEqual(fresh["odd_part_labels"], odd["part_labels"])
    self.assertAllClose(fresh["odd_part_centers"], odd["part_centers"], atol=1e-4)

    # serve_encoded: PNG bytes of different sizes in one batch; labels at the model size,
    # poses in each image's own pixels (the same numbers serving_default gives).
    self.assertAllEqual(fresh["encoded_image_sizes"], [[64, 64], [37, 90]])
    self.assertEqual(fresh["encoded_part_labels"].shape, (2, 64, 64))
    self.assertAllEqual(fresh["encoded_part_labels"][0], mine["part_labels"][0])
    self.assertAllClose(fresh["encoded_part_centers"][0], mine["part_centers"][0], atol=1e-4)
    self.assertAllClose(fresh["encoded_part_centers"][1], odd["part_centers"][1], atol=1e-4)

  def test_pixel_poses(self):
    """part_affines maps the canonical frame to pixels; its last column is the centre."""
    out = self._in_memory(self.odd)
    self.assertAllClose(out["part_affines"][..., 2], out["part_centers"])
    self.assertEqual(out["part_affines"].shape, (2, 3, 2, 3))
    self.assertTrue(np.all(out["foreground_fraction"] >= 0.0))
    self.assertTrue(np.all(out["foreground_fraction"] <= 1.0))
    self.assertAllClose(
      out["foreground_fraction"], np.mean(out["part_labels"] > 0, axis=(1, 2)), atol=1e-6
    )

  # ------------------------------------------------------------------ Segmenter and CLI

  def _make_run_dir(self):
    """A run directory written by the trainer's own checkpoint code (model + optimizer)."""
    from copart_tf.training import trainer

    run = os.path.join(self.tmp, "run")
    if not os.path.isdir(run):
      os.makedirs(run)
      config = {"num_parts": 3, "preset": "tiny", "image_size": 64, "compose_warps": False}
      with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
      loading.write_part_names(run, NAMES)
      optimizer = keras.optimizers.Adam()
      optimizer.build(self.model.trainable_variables)
      manager, _ = trainer.restore_or_initialize(self.model, optimizer, run, keep=1)
      manager.save()
    return run

  def test_segmenter_backends_agree(self):
    from_export = Segmenter.load(self.base)
    from_checkpoint = Segmenter.load(self._make_run_dir())
    self.assertEqual(from_export.version, 1)
    self.assertIsNone(from_export.model)
    self.assertIsInstance(from_checkpoint.model, CoPartModel)
    for segmenter in (from_export, from_checkpoint):
      self.assertEqual(segmenter.part_names, NAMES)
      self.assertEqual((segmenter.num_parts, segmenter.image_size), (3, 64))
    # Every weight must come back from the checkpoint, or the two backends cannot agree.
    not_restored = [
      w.path
      for w, r in zip(self.model.weights, from_checkpoint.model.weights, strict=True)
      if not np.array_equal(w.numpy(), r.numpy())
    ]
    self.assertEqual(
      not_restored,
      [],
      f"loading.load_from_model_dir left {len(not_restored)} of {len(self.model.weights)} "
      "weights at their initial values",
    )
    for images in (self.images, self.odd):
      a = from_export.segment(images)
      b = from_checkpoint.segment(images)
      self.assertAllEqual(a["part_labels"], b["part_labels"])
      self.assertAllClose(a["part_centers"], b["part_centers"], atol=1e-4)
      self.assertAllClose(a["part_affines"], b["part_affines"], atol=1e-4)
      self.assertAllClose(a["foreground_fraction"], b["foreground_fraction"])

  def test_segmenter_chunks_and_inputs(self):
    whole = self.segmenter.segment(self.images)
    chunked = Segmenter(self.segmenter._fn, NAMES, 64, None, batch_size=2).segment(self.images)
    self.assertAllEqual(whole["part_labels"], chunked["part_labels"])
    for key in ("part_centers", "part_affines", "foreground_fraction"):
      self.assertAllClose(whole[key], chunked[key], atol=1e-4)
    self.assertAllEqual(self.segmenter(self.images[0]), whole["part_labels"][:1])
    empty = self.segmenter.segment(np.zeros([0, 10, 12, 3], np.uint8))
    self.assertEqual(empty["part_labels"].shape, (0, 10, 12))
    with self.assertRaisesRegex(DataError, "uint8"):
      self.segmenter.segment(self.images.astype(np.float32))
    with self.assertRaisesRegex(DataError, "shape"):
      self.segmenter.segment(self.images[..., :2])

  def test_segmenter_errors(self):
    with self.assertRaisesRegex(ModelError, "no such directory"):
      Segmenter.load(os.path.join(self.tmp, "missing"))
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty, exist_ok=True)
    with self.assertRaisesRegex(ModelError, "saved_model.pb"):
      Segmenter.load(empty)

  def test_cli_errors(self):
    """The CLI checks its flags before importing TensorFlow: `error: ...` and exit status 2."""
    bad = subprocess.run(
      [sys.executable, "-m", "copart_tf.export", f"--export_base={self.base}"],
      capture_output=True,
      env=CHILD_ENV,
      text=True,
      timeout=SUBPROCESS_TIMEOUT,
    )
    self.assertEqual(bad.returncode, 2)
    self.assertIn("error: --model_dir and --export_base are required", bad.stderr)


class LadderRecipeExportTest(tf.test.TestCase):
  """The shipped humanoid configs' model options (row-median background, shaded matting, claims
  gate, presence, depth bound) export, and the SavedModel labels what the model labels."""

  def test_round_trip(self):
    keras.utils.set_random_seed(0)
    model = CoPartModel(
      num_parts=3,
      preset="tiny",
      image_size=64,
      compose_warps=True,
      shift_from="heatmap",
      pose_prior_radius=1.0,
      warp_source_pixels=True,
      initial_scale=0.25,
      gate_masks_by_claims=True,
      presence_threshold=0.03,
      depth_bound=5.0,
      background_colour="row_median",
      colour_matting_gain=4.0,
    )
    model.build()
    images = make_images()
    path = export_lib.export(model, os.path.join(tempfile.mkdtemp(), "copart"))
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    raw = model(tf.image.convert_image_dtype(images, tf.float32))
    self.assertAllEqual(out["part_labels"], raw["part_labels"])
    self.assertGreater(len(np.unique(raw["part_labels"].numpy())), 1)


if __name__ == "__main__":
  tf.test.main()
