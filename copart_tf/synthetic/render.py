"""One pybullet video: motion, camera, appearance, rendering with supersampling, labels and
landmarks (module docstring of `copart_tf.synthetic.dataset`, steps 1-5)."""

import numpy as np

from copart_tf.synthetic.appearance import _sample_appearance, _sky_image
from copart_tf.synthetic.camera import _NEAR, fit_camera, linearize_depth, project_points

# ----------------------------------------------------------------------------------------------
# Label down-sampling.


def downsample_rgb(rgb, factor):
  """Area-average `[H*f, W*f, 3]` uint8 -> `[H, W, 3]` uint8."""
  if factor == 1:
    return rgb
  h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
  blocks = rgb.reshape(h, factor, w, factor, -1).astype(np.float32).mean(axis=(1, 3))
  return np.clip(np.round(blocks), 0, 255).astype(np.uint8)


def downsample_labels(labels, factor):
  """Most frequent label per `factor x factor` block, `[H*f, W*f]` -> `[H, W]`.

  Ties are broken by a fixed sample order that depends on the output pixel's parity, so that over
  a straight edge half of the tied pixels go to each side (no systematic half-pixel shift).
  """
  if factor == 1:
    return labels
  h, w = labels.shape[0] // factor, labels.shape[1] // factor
  n = factor * factor
  samples = labels.reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, n)
  counts = (samples[..., :, None] == samples[..., None, :]).sum(-1)
  # Priority: rotate the sample order by the pixel parity (0..3) so ties do not favour a side.
  parity = (2 * (np.arange(h)[:, None] % 2) + (np.arange(w)[None, :] % 2)) % n
  order = (np.arange(n)[None, None, :] + parity[..., None]) % n
  counts_ordered = np.take_along_axis(counts, order, axis=-1)
  best = np.take_along_axis(order, np.argmax(counts_ordered, axis=-1)[..., None], axis=-1)
  return np.take_along_axis(samples, best, axis=-1)[..., 0]


# ----------------------------------------------------------------------------------------------
# One video.


def render_video(
  scene, rng, num_frames, size, fps, supersample=2, on_frame=None, clip=None, background="mixed"
):
  """Samples and renders one video.

  Args:
    scene: a `Scene`.
    rng: `np.random.Generator` for this video.
    num_frames: T.
    size: output frame size S (square).
    fps: frames per second of the motion.
    supersample: render at `supersample * size` and downsample (1 = no anti-aliasing).
    on_frame: optional callable() after each rendered frame.
    clip: force a motion clip (default: random).
    background: "mixed", "plain" or "textured" (see `_sample_appearance`).

  Returns:
    dict with ``frames`` uint8 `[T, S, S, 3]`, ``parts``/``links`` uint8 `[T, S, S]`,
    ``landmarks`` float32 `[T, L, 2]`, ``visible`` bool `[T, L]` and ``info`` (JSON-able).
  """
  spec = scene.spec
  for _ in range(50):
    motion = spec.sample_motion(rng, num_frames, fps, scene.data_path, clip=clip)
    if spec.floor_clearance is None:
      break
    lowest = np.inf
    for pose in motion.poses:
      scene.set_pose(pose)
      lowest = min(lowest, scene.lowest_moving_point())
    if lowest >= spec.floor_clearance:
      break
  azimuth = float(rng.uniform(0.0, 360.0))
  elevation = float(rng.uniform(0.0, 30.0))
  fov = float(rng.uniform(35.0, 50.0))
  height_fraction = float(rng.uniform(0.6, 0.9))
  offset = (float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05)))
  appearance = _sample_appearance(rng, scene.num_links + 1, background)

  corners, world_landmarks = [], []
  for pose in motion.poses:
    scene.set_pose(pose)
    corners.append(scene.bbox_corners())
    world_landmarks.append(scene.landmarks_world())
  camera = fit_camera(np.concatenate(corners), azimuth, elevation, fov, height_fraction, offset)
  view, proj = camera["view"], camera["proj"]

  scene.dress(appearance)
  big = size * supersample
  sky = _sky_image(appearance, big)
  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  links = np.zeros((num_frames, size, size), np.uint8)
  num_landmarks = len(spec.landmarks)
  landmarks = np.zeros((num_frames, num_landmarks, 2), np.float32)
  visible = np.zeros((num_frames, num_landmarks), bool)
  for t, pose in enumerate(motion.poses):
    scene.set_pose(pose)
    rgb, seg, depth_buf = scene.render(view, proj, big, big, appearance, azimuth)
    rgb = np.where((seg < 0)[..., None], sky, rgb)
    frames[t] = downsample_rgb(rgb, supersample)
    links[t] = downsample_labels(scene.link_labels(seg), supersample)
    pix, depth = project_points(world_landmarks[t], view, proj, size, size)
    landmarks[t] = pix
    visible[t] = _visibility(
      pix, depth, linearize_depth(depth_buf), size, supersample, spec.visibility_tolerance
    )
    if on_frame is not None:
      on_frame()
  parts = scene.link_to_part[links]
  info = {
    "clip": motion.clip,
    "motion": motion.params,
    "camera": {
      "azimuth_deg": round(azimuth, 4),
      "elevation_deg": round(elevation, 4),
      "fov_deg": round(fov, 4),
      "height_fraction": round(height_fraction, 4),
      "eye": np.round(camera["eye"], 6).tolist(),
      "target": np.round(camera["target"], 6).tolist(),
      "view_matrix": np.round(view, 8).tolist(),
      "projection_matrix": np.round(proj, 8).tolist(),
    },
    "appearance": {
      "body_rgb": np.round(appearance["body_rgb"], 4).tolist(),
      "floor_rgb": np.round(appearance["floor_rgb"], 4).tolist(),
      "floor_checker": appearance["floor_tiles_per_2m"] > 1,
      "sky_rgb": np.round(appearance["sky_rgb"], 4).tolist(),
    },
  }
  return {
    "frames": frames,
    "parts": parts,
    "links": links,
    "landmarks": landmarks,
    "visible": visible,
    "info": info,
  }


def _visibility(pix, depth, depth_map, size, supersample, tolerance):
  """Inside the frame and not behind the rendered surface by more than `tolerance`."""
  inside = (pix[:, 0] >= -0.5) & (pix[:, 0] < size - 0.5)
  inside &= (pix[:, 1] >= -0.5) & (pix[:, 1] < size - 0.5)
  inside &= depth > _NEAR
  big = size * supersample
  # Pixel-centre coordinates at the supersampled resolution: x_big = (x + 0.5) * f - 0.5.
  col = np.clip(np.round((pix[:, 0] + 0.5) * supersample - 0.5), 0, big - 1).astype(int)
  row = np.clip(np.round((pix[:, 1] + 0.5) * supersample - 0.5), 0, big - 1).astype(int)
  surface = depth_map[row, col]
  return inside & (depth <= surface + tolerance)
