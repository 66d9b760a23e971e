"""Generalizable Knowledge Distillation (Lv et al., CVPR 2026) as a reproducible pipeline."""
__version__ = "0.1.0"
