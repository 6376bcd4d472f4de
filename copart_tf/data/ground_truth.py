"""Ground-truth side-car files: ``root/labels/<split>/<video>.npz`` (DESIGN.md §6).

One npz per video, all arrays indexed by the video's frames (T of them):

- ``parts`` uint8 `[T, H, W]`: 0 = background, 1..K = the body's parts.
- ``links`` uint8 `[T, H, W]`: raw link labels, 0 = background, 1 = the base link,
  2 + i = pybullet link i (names in ``link_names``).
- ``landmarks`` float32 `[T, L, 2]`: (x, y) in pixels of the frame, 0 = centre of the first pixel
  (the convention of `copart_tf.ops.grid`).
- ``visible`` bool `[T, L]`.
- ``part_names`` str `[K+1]` with ``part_names[0] == "background"``, ``link_names`` str,
  ``landmark_names`` str `[L]`.
- optional extra arrays (``write_ground_truth(..., extra=...)``), each with leading dimension T,
  e.g. the synthetic ladders' ``poses`` float32 `[T, P, 2, 3]` and ``pose_visible`` bool `[T, P]`
  (`copart_tf.synthetic.sprites`, `copart_tf.synthetic.figure2d`). `read_ground_truth` ignores them;
  `read_extra` / `read_poses` return them.

Only ``parts`` (for foreground and part IoU) or ``landmarks`` (for landmark regression) is needed
to read a file: `read_ground_truth` fills in what is missing (``visible`` = None, meaning "finite
and inside the frame", decided by the reader of the frames; ``part_names`` = ``background,
part_1, ..``; ``landmark_names`` = ``landmark_1, ..``; ``links`` = None) and lists the filled-in
keys in ``defaulted``. `write_ground_truth` still writes every array.

Files are written byte-for-byte deterministically (fixed zip timestamps, no pickles), so a dataset
generated twice with the same seed is identical. They are read with ``allow_pickle=False``.
"""

import io
import os
import zipfile

import numpy as np

from copart_tf.errors import DataError

_ARRAY_KEYS = ("parts", "links", "landmarks", "visible")
_NAME_KEYS = ("part_names", "link_names", "landmark_names")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _names_array(names, key, path):
  names = [str(n) for n in names]
  if not names:
    raise DataError(f"{path}: {key} is empty")
  return np.asarray(names, dtype=np.str_)


def write_npz_deterministic(path, arrays):
  """Writes a compressed npz whose bytes depend only on the arrays (fixed timestamps and order).

  Args:
    path: output file path.
    arrays: dict name -> np.ndarray (no object arrays).
  """
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
    for name in sorted(arrays):
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
      info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
      info.compress_type = zipfile.ZIP_DEFLATED
      info.external_attr = 0o644 << 16
      zf.writestr(info, buf.getvalue(), compresslevel=6)


def write_ground_truth(
  path, parts, links, landmarks, visible, part_names, link_names, landmark_names, extra=None
):
  """Validates and writes one video's ground truth.

  Args:
    path: output ``.npz`` path (parent folders are created).
    parts: `[T, H, W]` integer part labels in ``0..K``.
    links: `[T, H, W]` integer raw link labels in ``0..len(link_names)-1``.
    landmarks: `[T, L, 2]` (x, y) pixel coordinates.
    visible: `[T, L]` bool.
    part_names: K+1 names, ``[0] == 'background'``.
    link_names: names of the raw link labels, ``[0] == 'background'``.
    landmark_names: L names.
    extra: optional dict name -> array of additional arrays, written as they are (no object
      dtypes); each must have leading dimension T. Names must differ from the standard keys.
      Without extras the file is byte-identical to one written before extras existed.

  Raises:
    DataError: inconsistent shapes or values (the message names `path`).
  """
  arrays = {
    "parts": np.asarray(parts),
    "links": np.asarray(links),
    "landmarks": np.asarray(landmarks, dtype=np.float32),
    "visible": np.asarray(visible, dtype=bool),
    "part_names": _names_array(part_names, "part_names", path),
    "link_names": _names_array(link_names, "link_names", path),
    "landmark_names": _names_array(landmark_names, "landmark_names", path),
  }
  for key in ("parts", "links"):
    arr = arrays[key]
    if arr.size and (arr.min() < 0 or arr.max() > 255):
      raise DataError(
        f"{path}: {key} values must fit in uint8, got range [{arr.min()}, {arr.max()}]"
      )
    arrays[key] = arr.astype(np.uint8)
  _validate(arrays, path)
  t = arrays["parts"].shape[0]
  for name, value in (extra or {}).items():
    name = str(name)
    if name in arrays or not name.isidentifier():
      raise DataError(f"{path}: extra array name {name!r} is reserved or not an identifier")
    value = np.asarray(value)
    if value.dtype.kind == "O":
      raise DataError(f"{path}: extra array {name!r} has object dtype")
    if value.ndim < 1 or value.shape[0] != t:
      raise DataError(
        f"{path}: extra array {name!r} must have leading dimension T={t}, got shape {value.shape}"
      )
    arrays[name] = value
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  write_npz_deterministic(path, arrays)


def default_part_names(num_parts):
  """``["background", "part_1", ..., "part_K"]``."""
  return ["background"] + [f"part_{k}" for k in range(1, int(num_parts) + 1)]


def default_landmark_names(num_landmarks):
  """``["landmark_1", ..., "landmark_L"]``."""
  return [f"landmark_{i}" for i in range(1, int(num_landmarks) + 1)]


def _label_array(value, key, path):
  """An integer (or bool) label array as uint8; DataError naming `path` otherwise."""
  if value.dtype.kind == "b":
    return value.astype(np.uint8)
  if value.dtype.kind not in "iu":
    raise DataError(f"{path}: {key} must be uint8, got {value.dtype}")
  if value.size and (value.min() < 0 or value.max() > 255):
    raise DataError(
      f"{path}: {key} values must fit in uint8, got range [{value.min()}, {value.max()}]"
    )
  return value.astype(np.uint8)


def read_ground_truth(path, num_frames=None, image_size=None):
  """Reads and validates one video's ground truth.

  Only one of ``parts`` and ``landmarks`` must be in the file; the other arrays are optional
  (module docstring).

  Args:
    path: ``.npz`` path.
    num_frames: if given, the expected T (the number of frames of the video).
    image_size: if given, the expected (H, W) or a single int for square frames (checked only
      when the file has ``parts``).

  Returns:
    dict with ``parts`` uint8 `[T, H, W]` or None, ``links`` uint8 `[T, H, W]` or None,
    ``landmarks`` float32 `[T, L, 2]` or None, ``visible`` bool `[T, L]` or None (not in the
    file), ``part_names``, ``link_names`` and ``landmark_names`` as lists of str (defaults when
    not in the file; ``link_names`` is empty without links), ``num_parts`` (K, 0 without parts),
    ``num_frames`` (T) and ``defaulted`` (the keys filled in, in file-key order).

  Raises:
    DataError: missing/unreadable file, neither parts nor landmarks, wrong dtypes or shapes (names
      `path`).
  """
  if not os.path.isfile(path):
    raise DataError(f"ground-truth file {path} does not exist")
  try:
    with np.load(path, allow_pickle=False) as data:
      if "parts" not in data.files and "landmarks" not in data.files:
        raise DataError(
          f"{path}: has neither parts ([T, H, W] labels) nor landmarks ([T, L, 2]): nothing to "
          f"evaluate (has {sorted(data.files)})"
        )
      arrays = {k: data[k] for k in _ARRAY_KEYS + _NAME_KEYS if k in data.files}
  except DataError:
    raise
  except Exception as e:  # zipfile.BadZipFile, ValueError (pickles), OSError, EOFError ...
    raise DataError(f"cannot read ground-truth file {path}: {type(e).__name__}: {e}") from e
  defaulted = [k for k in _ARRAY_KEYS + _NAME_KEYS if k not in arrays]
  for key in ("parts", "links"):
    if key in arrays:
      arrays[key] = _label_array(arrays[key], key, path)
  if "landmarks" in arrays:
    if arrays["landmarks"].dtype.kind not in "fiu":
      raise DataError(f"{path}: landmarks must be float32, got {arrays['landmarks'].dtype}")
    arrays["landmarks"] = arrays["landmarks"].astype(np.float32)
  if "visible" in arrays and "landmarks" not in arrays:
    del arrays["visible"]
  if "links" in arrays and "parts" not in arrays:
    raise DataError(f"{path}: has links but no parts")
  _validate(arrays, path)
  parts, landmarks = arrays.get("parts"), arrays.get("landmarks")
  t = parts.shape[0] if parts is not None else landmarks.shape[0]
  if num_frames is not None and t != num_frames:
    raise DataError(f"{path}: has {t} frames of ground truth but the video has {num_frames}")
  if image_size is not None and parts is not None:
    h, w = parts.shape[1:]
    want = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if (h, w) != tuple(want):
      raise DataError(f"{path}: label maps are {h}x{w} but the frames are {want[0]}x{want[1]}")
  out = {k: arrays.get(k) for k in _ARRAY_KEYS}
  for k in _NAME_KEYS:
    out[k] = [str(n) for n in arrays[k].tolist()] if k in arrays else None
  if out["part_names"] is None:
    out["part_names"] = default_part_names(
      max(1, int(parts.max())) if parts is not None and parts.size else 1
    )
  if out["landmark_names"] is None:
    out["landmark_names"] = default_landmark_names(0 if landmarks is None else landmarks.shape[1])
  if out["link_names"] is None:
    out["link_names"] = []
  out["num_parts"] = len(out["part_names"]) - 1 if parts is not None else 0
  out["num_frames"] = t
  out["defaulted"] = defaulted
  return out


def read_extra(path):
  """The extra arrays of a ground-truth file (those not read by `read_ground_truth`).

  Returns:
    dict name -> np.ndarray (empty if the file has none).

  Raises:
    DataError: missing or unreadable file.
  """
  if not os.path.isfile(path):
    raise DataError(f"ground-truth file {path} does not exist")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files if k not in _ARRAY_KEYS + _NAME_KEYS}
  except Exception as e:  # zipfile.BadZipFile, ValueError (pickles), OSError, EOFError ...
    raise DataError(f"cannot read ground-truth file {path}: {type(e).__name__}: {e}") from e


def read_poses(path):
  """Ground-truth part poses of a synthetic-ladder video (`copart_tf.synthetic.sprites`/`figure2d`).

  Returns:
    dict with ``poses`` float32 `[T, P, 2, 3]` (canonical -> image affines [A | t] in normalised
    coordinates, A A^T = the part's covariance) and ``pose_visible`` bool `[T, P]`.

  Raises:
    DataError: missing/unreadable file, no poses in it, or inconsistent shapes.
  """
  extra = read_extra(path)
  if "poses" not in extra or "pose_visible" not in extra:
    raise DataError(f"{path}: has no poses/pose_visible arrays (has extras {sorted(extra)})")
  poses = np.asarray(extra["poses"], np.float32)
  pose_visible = np.asarray(extra["pose_visible"], bool)
  if poses.ndim != 4 or poses.shape[2:] != (2, 3) or pose_visible.shape != poses.shape[:2]:
    raise DataError(
      f"{path}: poses must be [T, P, 2, 3] with pose_visible [T, P], got {poses.shape} and "
      f"{pose_visible.shape}"
    )
  return {"poses": poses, "pose_visible": pose_visible}


def _validate(arrays, path):
  """Checks dtypes, shapes and label ranges of the arrays present; raises DataError naming `path`.

  `write_ground_truth` passes every key; `read_ground_truth` only those in the file.
  """
  expected_dtypes = {
    "parts": np.uint8,
    "links": np.uint8,
    "landmarks": np.float32,
    "visible": np.bool_,
  }
  for key, dtype in expected_dtypes.items():
    if key in arrays and arrays[key].dtype != dtype:
      raise DataError(f"{path}: {key} must be {np.dtype(dtype).name}, got {arrays[key].dtype}")
  for key in _NAME_KEYS:
    arr = arrays.get(key)
    if arr is not None and (arr.dtype.kind not in "US" or arr.ndim != 1):
      raise DataError(f"{path}: {key} must be a 1-D string array, got {arr.dtype} {arr.shape}")
  parts, links = arrays.get("parts"), arrays.get("links")
  landmarks, visible = arrays.get("landmarks"), arrays.get("visible")
  t = None
  if parts is not None:
    if parts.ndim != 3:
      raise DataError(f"{path}: parts must be [T, H, W], got shape {parts.shape}")
    t = parts.shape[0]
  if links is not None and links.shape != parts.shape:
    raise DataError(f"{path}: links shape {links.shape} != parts shape {parts.shape}")
  if landmarks is not None:
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or t not in (None, landmarks.shape[0]):
      raise DataError(
        f"{path}: landmarks must be [T{'' if t is None else f'={t}'}, L, 2], got shape "
        f"{landmarks.shape}"
      )
    t, num_landmarks = landmarks.shape[:2]
    if visible is not None and visible.shape != (t, num_landmarks):
      raise DataError(
        f"{path}: visible must be [T, L] = [{t}, {num_landmarks}], got shape {visible.shape}"
      )
    names = arrays.get("landmark_names")
    if names is not None and len(names) != num_landmarks:
      raise DataError(f"{path}: {len(names)} landmark_names for {num_landmarks} landmarks")
    # Without `visible`, a non-finite landmark is just not visible.
    if visible is not None and np.any(~np.all(np.isfinite(landmarks), axis=-1) & visible):
      raise DataError(f"{path}: landmarks contain NaN or inf where visible is True")
  part_names = arrays.get("part_names")
  if part_names is not None and parts is not None:
    if len(part_names) < 2 or str(part_names[0]) != "background":
      raise DataError(
        f"{path}: part_names must be [K+1] with part_names[0] == 'background', got "
        f"{[str(n) for n in part_names.tolist()]}"
      )
    if parts.size and int(parts.max()) >= len(part_names):
      raise DataError(
        f"{path}: parts has label {int(parts.max())} but only {len(part_names) - 1} parts are named"
      )
  link_names = arrays.get("link_names")
  if link_names is not None and links is not None and links.size:
    if int(links.max()) >= len(link_names):
      raise DataError(
        f"{path}: links has label {int(links.max())} but only {len(link_names)} link_names"
      )
