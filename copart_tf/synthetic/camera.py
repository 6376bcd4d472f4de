"""Camera geometry of the pybullet generator (OpenGL conventions, matrices are row-major numpy
arrays here): view and projection matrices, TinyRenderer's half-pixel shift, projecting world
points to pixels, depth-buffer linearisation and fitting a camera to a clip's extent (numpy only).
"""

import numpy as np

from copart_tf.errors import DataError

_NEAR = 0.05
_FAR = 60.0
_MAX_WIDTH_FRACTION = 0.92


def look_at(eye, target, up=(0.0, 0.0, 1.0)):
  """OpenGL view matrix `[4, 4]` (world -> eye coordinates, camera looks down -z)."""
  eye = np.asarray(eye, np.float64)
  f = np.asarray(target, np.float64) - eye
  f /= np.linalg.norm(f)
  s = np.cross(f, up)
  s /= np.linalg.norm(s)
  u = np.cross(s, f)
  view = np.eye(4)
  view[0, :3], view[1, :3], view[2, :3] = s, u, -f
  view[:3, 3] = -view[:3, :3] @ eye
  return view


def perspective(fov_deg, aspect=1.0, near=_NEAR, far=_FAR):
  """OpenGL projection matrix `[4, 4]` for a vertical field of view in degrees."""
  f = 1.0 / np.tan(np.radians(fov_deg) / 2.0)
  proj = np.zeros((4, 4))
  proj[0, 0] = f / aspect
  proj[1, 1] = f
  proj[2, 2] = (far + near) / (near - far)
  proj[2, 3] = 2.0 * far * near / (near - far)
  proj[3, 2] = -1.0
  return proj


def render_projection(proj, height, width):
  """Projection matrix to hand to TinyRenderer so its pixels sample at our pixel centres.

  TinyRenderer samples output pixel (i, j) at (i - 0.5, j + 0.5) in pixel-centre coordinates
  (measured: see tests). Shifting NDC by (-1/W, -1/H) moves the samples to (i, j).
  """
  out = np.array(proj, np.float64)
  out[0] -= out[3] / width
  out[1] -= out[3] / height
  return out


def project_points(points, view, proj, height, width):
  """Projects world points to pixels.

  Args:
    points: `[N, 3]` world coordinates.
    view: `[4, 4]` view matrix.
    proj: `[4, 4]` projection matrix (the ideal one, not `render_projection`'s).
    height: image height H.
    width: image width W.

  Returns:
    (pixels `[N, 2]` (x, y), 0 = centre of the first pixel; eye depth `[N]`, distance along the
    viewing axis, positive in front of the camera).
  """
  pts = np.concatenate([points, np.ones((len(points), 1))], axis=1)
  eye = pts @ view.T
  clip = eye @ proj.T
  ndc = clip[:, :3] / clip[:, 3:4]
  x = (ndc[:, 0] + 1.0) * 0.5 * width - 0.5
  y = (1.0 - ndc[:, 1]) * 0.5 * height - 0.5
  return np.stack([x, y], axis=1), -eye[:, 2]


def linearize_depth(buffer, near=_NEAR, far=_FAR):
  """Converts pybullet's depth buffer (in [0, 1]) to eye depth in metres."""
  return far * near / (far - (far - near) * np.asarray(buffer, np.float64))


def fit_camera(points, azimuth_deg, elevation_deg, fov_deg, height_fraction, offset=(0.0, 0.0)):
  """Places a camera with a given direction so `points` fill a given part of the frame.

  Args:
    points: `[N, 3]` world points (e.g. link bounding-box corners over all frames of a clip).
    azimuth_deg: camera azimuth around the world z axis.
    elevation_deg: camera elevation above the horizontal (positive = looking down).
    fov_deg: vertical field of view.
    height_fraction: fraction of the frame height the points' projected extent should span (the
      width is limited to 92 % of the frame, whichever is tighter wins).
    offset: (x, y) NDC position of the extent's centre (0 = image centre).

  Returns:
    dict with ``eye``, ``target`` (`[3]`), ``view`` and ``proj`` (`[4, 4]`).
  """
  az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
  back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
  forward = -back
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  tan_half = np.tan(np.radians(fov_deg) / 2.0)
  lo, hi = points.min(axis=0), points.max(axis=0)
  target = (lo + hi) / 2.0
  dist = max(2.0 * np.linalg.norm(hi - lo), 1.0)
  for _ in range(30):
    eye = target + dist * back
    rel = points - eye
    z = np.maximum(rel @ forward, 1e-3)
    nx = (rel @ right) / (z * tan_half)
    ny = (rel @ up) / (z * tan_half)
    w, h = nx.max() - nx.min(), ny.max() - ny.min()
    cx, cy = (nx.max() + nx.min()) / 2.0 - offset[0], (ny.max() + ny.min()) / 2.0 - offset[1]
    scale = max(h / (2.0 * height_fraction), w / (2.0 * _MAX_WIDTH_FRACTION), 1e-3)
    target = target + (cx * right + cy * up) * dist * tan_half
    dist *= scale
    if abs(scale - 1.0) < 1e-4 and abs(cx) < 1e-4 and abs(cy) < 1e-4:
      break
  eye = target + dist * back
  near_depth = float(((points - eye) @ forward).min())
  if near_depth <= 2.0 * _NEAR:
    raise DataError(f"camera fit failed: body {near_depth:.3f} m from the camera")
  return {
    "eye": eye,
    "target": target,
    "view": look_at(eye, target),
    "proj": perspective(fov_deg),
  }
