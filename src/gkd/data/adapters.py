"""Dataset adapters by name: a benchmark preset's ``adapter`` → its class list, palette and split records.

Each adapter lives in the module of its name (``gkd.data.synthetic``, ``gkd.data.real``) and registers itself
with ``@register_adapter``; ``ADAPTERS[name]`` imports only that module. So `prepare` on `synthetic` runs
(and depends on) the generator alone, not the real-dataset readers: editing a reader reruns nothing there.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from gkd.registry import ModuleRegistry

# An adapter turns a benchmark preset into its class list, palette and the records of every split.
# records: iterator of (domain, split, iterator of (name, image H×W×3 uint8, label H×W uint8)).
Records = Iterator[tuple[str, str, int, Iterator[tuple[str, np.ndarray, np.ndarray]]]]
# name -> fn(BenchmarkConfig, seed, datasets) -> (info, Records)
ADAPTERS = ModuleRegistry("dataset adapter", "gkd.data", "register_adapter")
register_adapter = ADAPTERS.register
