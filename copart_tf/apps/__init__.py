"""Library code behind the user-facing tools `copart_tf.segment`, `copart_tf.animate` and
`copart_tf.name_parts`.

- `cli`: flag parsing and the ``error: <message>`` / exit 2 convention shared by the tools.
- `media`: reading the tools' inputs (videos, frame folders, strips, single images; huge frames
  downscaled) and streaming writers for mp4 / gif / PNG frames.
- `tracks`: per-frame part tracks (centre, rotation, scale) as streamed JSON and CSV files.
- `progress`: a bar with ETA on a terminal, periodic lines otherwise.
- `rendering`: overlays, part axes, legends, side-by-side panels.
- `segmentation`, `animation`, `naming`: the three tools' work, callable from Python.
"""
