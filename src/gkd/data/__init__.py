"""Datasets: the generated `synthetic` benchmark, real dataset readers (one per file), the prepared
on-disk format, label maps and training views. Adapters by name live in ``gkd.data.adapters``."""
