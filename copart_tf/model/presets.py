"""Architecture presets: the same code at different widths (DESIGN.md §3).

- `paper`: the reference widths (stem 64/256/512, hourglass up to 1024 channels, ~111M encoder
  parameters, C_lat = 10, full-resolution decoder). A GPU configuration.
- `small`: what CPU users train; the demo and the synthetic benchmark use it.
- `tiny`: unit tests only.
"""

import dataclasses

from copart_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Preset:
  """Widths of every block.

  Attributes:
    name: preset name.
    stem_channels: channels of the stem convs; the first runs at full resolution, each later one
      halves the resolution (two of them: the latent maps live at H/4 x W/4).
    hourglass_channels: channels of the hourglass down blocks (each halves the resolution); the up
      path mirrors them with skip connections back to H/4.
    convs_per_block: 3x3 convs per hourglass block.
    part_map_channels: hidden channels of the part-map head (0 = a single conv).
    latent_channels: C_lat, channels of each part's latent map.
    head_channels: channels of the transform head's strided convs.
    head_hidden: width of the transform head's hidden dense layer.
    decoder_channels: decoder widths. Without pixel shuffle: one conv at latent resolution, then
      one per x2 upsampling. With pixel shuffle: every conv runs at latent resolution.
    decoder_pixel_shuffle: 0 = upsample-then-conv decoder (reference style); r > 0 = a 1x1 conv to
      4 r^2 channels and depth_to_space(r) (sub-pixel convolution). On CPU, small-channel convs
      at high resolution are slow (16->4 channels at 64x64 ran at 5 GMAC/s here, vs ~35 for wide
      convs at 32x32), so the small preset decodes at latent resolution and shuffles.
    decoder_output_stride: resolution of the decoder output relative to the image (1 = full; 2 = the
      decoder stops at H/2 and its 4 output channels are bilinearly upsampled, a 3x cheaper CPU
      choice).
    groups: GroupNorm groups of the encoder and heads (0 disables normalisation).
    decoder_groups: GroupNorm groups of the decoder (0 = none).

  Every preset trains WITHOUT normalisation. GroupNorm (like InstanceNorm) removes each sample's
  mean, i.e. the colour of a plain background or of a uniformly coloured part, which then has to
  be smuggled through the non-normalised layers: an encoder-decoder autoencoder on the synthetic
  humanoid reached L1 0.031 with GroupNorm vs 0.019 without after 600 steps (batch 4, lr 3e-4),
  and was slower per step. BatchNorm would keep the colour but mixes the three encoder passes and
  the K+1 parts folded into the decoder's batch (DESIGN.md §3). The networks are shallow enough
  to train without it.
  """

  name: str
  stem_channels: tuple
  hourglass_channels: tuple
  convs_per_block: int
  part_map_channels: int
  latent_channels: int
  head_channels: tuple
  head_hidden: int
  decoder_channels: tuple
  decoder_pixel_shuffle: int
  decoder_output_stride: int
  groups: int
  decoder_groups: int


PRESETS = {
  "paper": Preset(
    name="paper",
    stem_channels=(64, 256, 512),
    hourglass_channels=(1024, 1024, 1024),
    convs_per_block=2,
    part_map_channels=512,
    latent_channels=10,
    head_channels=(256, 256, 256),
    head_hidden=512,
    decoder_channels=(256, 128, 64),
    decoder_pixel_shuffle=0,
    decoder_output_stride=1,
    groups=0,
    decoder_groups=0,
  ),
  "small": Preset(
    name="small",
    stem_channels=(16, 32, 64),
    hourglass_channels=(96, 128, 192),
    convs_per_block=1,
    part_map_channels=64,
    latent_channels=8,
    head_channels=(64, 64, 64),
    head_hidden=256,
    decoder_channels=(32, 16),
    decoder_pixel_shuffle=0,
    decoder_output_stride=2,
    groups=0,
    decoder_groups=0,
  ),
  "tiny": Preset(
    name="tiny",
    stem_channels=(8, 8, 16),
    hourglass_channels=(16, 16),
    convs_per_block=1,
    part_map_channels=0,
    latent_channels=4,
    head_channels=(16, 16),
    head_hidden=32,
    decoder_channels=(16, 16),
    decoder_pixel_shuffle=2,
    decoder_output_stride=2,
    groups=0,
    decoder_groups=0,
  ),
}


def get_preset(name):
  """Returns the `Preset` called `name`, or raises ConfigError listing the valid names."""
  if isinstance(name, Preset):
    return name
  try:
    return PRESETS[name]
  except KeyError:
    raise ConfigError(
      f"--preset={name!r} is not a preset; choose one of {', '.join(sorted(PRESETS))}"
    ) from None
