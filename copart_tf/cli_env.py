"""The TensorFlow environment of copart_tf's programs; importing this module sets it.

A library must not change its process' environment on import, so `import copart_tf` leaves it
alone; the command-line programs (`python -m copart_tf.train`, `.segment`, `.export`, `.evaluate`,
`serving.server`, ...) and the benchmark scripts (`benchmarks/*.py`) import this module before
anything imports TensorFlow. Both settings are defaults: a variable already set wins.

- `TF_ENABLE_ONEDNN_OPTS=1`: TensorFlow turns its oneDNN kernels on by default only on some x86
  CPUs (on the AVX-512 VM of 2026-12-07 it did; on the machines of issue 9 it did not); on, the
  small preset's training step ran 1.3x and its forward pass 1.8x faster (measured on 2-core
  x86). Set it to 0 to compare.
- `TF_CPP_MIN_LOG_LEVEL=1`: TensorFlow's C++ INFO lines (CPU feature guard, oneDNN notice) drown
  our own progress output.

A program that embeds copart_tf sets them itself, before importing TensorFlow, if it wants them.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
