"""Random appearance of a pybullet video: body, floor and sky colours, checker floor textures,
the sky gradient and the light (numpy only)."""

import numpy as np


def _hsv_to_rgb(h, s, v):
  h = (h % 1.0) * 6.0
  i = int(np.floor(h)) % 6
  f = h - np.floor(h)
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
  return np.clip(np.array(rgb, np.float64), 0.0, 1.0)


BACKGROUNDS = ("mixed", "plain", "textured")


def _sample_appearance(rng, num_links, background="mixed"):
  """Random body/floor/sky colours with some contrast between body and background.

  `background`: "mixed" (checker floor in 70% of the videos), "plain" (uniform floor; the sky keeps
  its smooth vertical gradient) or "textured" (always a checker floor).
  """
  for _ in range(100):
    body_hsv = (rng.uniform(), rng.uniform(0.3, 0.85), rng.uniform(0.5, 0.95))
    floor_hsv = (rng.uniform(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.8))
    sky_hsv = (rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.55, 1.0))
    body = _hsv_to_rgb(*body_hsv)
    floor = _hsv_to_rgb(*floor_hsv)
    sky = _hsv_to_rgb(*sky_hsv)
    if min(np.linalg.norm(body - floor), np.linalg.norm(body - sky)) > 0.3:
      break
  link_colors = []
  for _ in range(num_links):
    h = body_hsv[0] + rng.uniform(-0.02, 0.02)
    s = np.clip(body_hsv[1] * rng.uniform(0.9, 1.1), 0.0, 1.0)
    v = np.clip(body_hsv[2] + rng.uniform(-0.07, 0.07), 0.0, 1.0)
    link_colors.append(_hsv_to_rgb(h, s, v))
  checker = bool(rng.uniform() < 0.7)
  if background != "mixed":
    checker = background == "textured"
  floor_dark = np.clip(floor * rng.uniform(0.7, 0.85), 0.0, 1.0) if checker else floor
  tiles = int(rng.choice([4, 6, 8]))
  light_az = rng.uniform(-60.0, 60.0)
  light_el = rng.uniform(35.0, 75.0)
  return {
    "body_rgb": body,
    "link_rgb": link_colors,
    "floor_rgb": floor,
    "floor_rgb2": floor_dark,
    "floor_tiles_per_2m": tiles if checker else 1,
    "sky_rgb": sky,
    "sky_top_rgb": np.clip(sky * rng.uniform(0.75, 0.95), 0.0, 1.0),
    "light_azimuth_offset": light_az,
    "light_elevation": light_el,
    "ambient": rng.uniform(0.45, 0.7),
    "diffuse": rng.uniform(0.3, 0.5),
    "specular": rng.uniform(0.0, 0.15),
  }


def _checker_texture(color_a, color_b, tiles, px_per_tile=8):
  n = tiles * px_per_tile
  yy, xx = np.mgrid[0:n, 0:n] // px_per_tile
  mask = ((yy + xx) % 2 == 0)[..., None]
  a = np.round(np.asarray(color_a) * 255).astype(np.uint8)
  b = np.round(np.asarray(color_b) * 255).astype(np.uint8)
  return np.where(mask, a, b).astype(np.uint8)


def _sky_image(appearance, size):
  ramp = np.linspace(0.0, 1.0, size)[:, None, None]
  sky = (
    appearance["sky_top_rgb"][None, None] * (1 - ramp) + appearance["sky_rgb"][None, None] * ramp
  )
  sky = np.broadcast_to(sky, (size, size, 3))
  return np.round(sky * 255).astype(np.uint8)
