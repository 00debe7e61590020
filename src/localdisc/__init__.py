"""localdisc: label-efficient medical image segmentation with local discrimination.

Pixel- and region-level self-supervised pretraining (2D and 3D), transfer into a U-Net,
one-shot landmarks and label-free structure discovery. See README.md and SPEC.md.
"""

__version__ = "0.1.0"
