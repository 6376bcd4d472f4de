"""The reference anchor (issue 9) and the ratios of our numbers to it.

The authors' PyTorch code, measured by a colleague of the lead on this machine type: torch 2.13
CPU (version as reported in the issue), `torch.set_num_threads(2)`, batch 1, 128 x 128 images,
K = 10, the full loss (VGG-19 perceptual term included). We do not ship torch; benchmarks/README.md
says how to reproduce the measurement.
"""

REFERENCE = {
  "description": (
    "authors' PyTorch code, torch 2.13 CPU, 2 threads, batch 1, 128x128, K=10, full loss "
    "(VGG-19), measured on this machine type (issue 9)"
  ),
  "train_step_s": 9.6,
  "forward_s": 3.1,
  "backward_s": 5.7,
  "peak_rss_gib": 3.4,
  # Their inference rate is taken to be their training forward pass: 1 / 3.1 s per image.
  "inference_images_per_second": round(1.0 / 3.1, 4),
  "inference_note": (
    "no inference measurement of the reference exists: its training forward pass (3.1 s per "
    "image at batch 1) is used as its inference rate, 0.32 images/s"
  ),
  "batch": 1,
  "image_size": 128,
  "num_parts": 10,
}

TARGETS = {
  "train_step_ratio_max": 0.7,  # our paper preset's train step <= 0.7 x theirs
  "inference_speedup_min": 1.5,  # SavedModel images/s >= 1.5 x theirs
}


def _ratio(ours, theirs):
  if ours is None or not theirs:
    return None
  return round(ours / theirs, 4)


def compare(result, config):
  """Ratios of our measurements to the reference.

  Per-example times are compared when our batch is not 1 (flagged by ``same_setting``).

  Args:
    result: the benchmark's result dict (reads its ``train`` and ``infer`` sections if present).
    config: the `BenchmarkConfig`.

  Returns:
    dict: same_setting (paper preset, batch 1, 128x128, K=10, VGG loss) and, for what was
    measured, the ratios and whether the targets are met.
  """
  same = (
    config.preset == "paper"
    and config.batch == REFERENCE["batch"]
    and config.image_size == REFERENCE["image_size"]
    and config.num_parts == REFERENCE["num_parts"]
    and config.perceptual == "random"
  )
  out = {"same_setting": same}
  notes = []
  if not same:
    notes.append(
      "the reference setting is --preset=paper --batch=1 --image_size=128 --num_parts=10 "
      "--perceptual=random; these ratios compare a different setting"
    )
  train = result.get("train")
  if train:
    per_example_s = train["step_ms"]["median"] / 1000.0 / config.batch
    forward_s = train["forward_ms"]["median"] / 1000.0 / config.batch
    backward_s = train["backward_ms"] / 1000.0 / config.batch
    ratio = _ratio(per_example_s, REFERENCE["train_step_s"])
    out["train_step_ratio"] = ratio
    out["train_step_target"] = f"<= {TARGETS['train_step_ratio_max']}"
    out["train_step_target_met"] = ratio is not None and ratio <= TARGETS["train_step_ratio_max"]
    out["train_speedup"] = _ratio(REFERENCE["train_step_s"], per_example_s)
    out["forward_ratio"] = _ratio(forward_s, REFERENCE["forward_s"])
    out["backward_ratio"] = _ratio(backward_s, REFERENCE["backward_s"])
    peak = (train.get("memory") or {}).get("peak_rss_mb")
    if peak is not None:
      out["train_peak_rss_ratio"] = _ratio(peak / 1024.0, REFERENCE["peak_rss_gib"])
    if config.batch != 1:
      notes.append("train ratios use our per-example time (step / batch)")
  infer = result.get("infer")
  if infer:
    saved = infer["saved_model"]
    one = saved.get("1")
    if one is not None:
      speedup = _ratio(one["images_per_second"], REFERENCE["inference_images_per_second"])
      out["inference_speedup_batch1"] = speedup
      out["inference_target"] = f">= {TARGETS['inference_speedup_min']}"
      out["inference_target_met"] = (
        speedup is not None and speedup >= TARGETS["inference_speedup_min"]
      )
    best = max(saved.items(), key=lambda kv: kv[1]["images_per_second"] or 0.0)
    out["inference_speedup_best_batch"] = {
      "batch": int(best[0]),
      "speedup": _ratio(best[1]["images_per_second"], REFERENCE["inference_images_per_second"]),
    }
  out["notes"] = notes
  return out
