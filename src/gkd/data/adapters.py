"""Dataset adapters by name: a benchmark preset's ``adapter`` → its class list, palette and split records.

Only the `prepare` stage imports this module (and through it the real-dataset readers), so a change to
a reader reruns `prepare` and what follows from its data, not every training stage.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from gkd.config import BenchmarkConfig, ConfigError
from gkd.data import real
from gkd.data import synthetic as syn
from gkd.registry import Registry

# An adapter turns a benchmark preset into its class list, palette and the records of every split.
# records: iterator of (domain, split, iterator of (name, image H×W×3 uint8, label H×W uint8)).
Records = Iterator[tuple[str, str, int, Iterator[tuple[str, np.ndarray, np.ndarray]]]]
ADAPTERS = Registry("dataset adapter")  # name -> fn(BenchmarkConfig, seed, datasets) -> (info, Records)
register_adapter = ADAPTERS.register


@register_adapter("synthetic")
def synthetic_adapter(bench: BenchmarkConfig, seed: int, datasets: dict[str, str]):
    """Generated on the fly: there are no raw folders, so ``datasets`` is unused."""

    if bench.source != syn.SOURCE_DOMAIN or any(t not in syn.TARGET_DOMAINS for t in bench.targets):
        raise ConfigError(f"synthetic benchmark: source must be {syn.SOURCE_DOMAIN!r} and targets a subset of "
                          f"{', '.join(syn.TARGET_DOMAINS)}; got source={bench.source!r}, targets={bench.targets}")
    info = dict(classes=list(syn.CLASSES), palette=syn.LABEL_COLOURS.tolist())

    def records():
        import os
        from concurrent.futures import ProcessPoolExecutor
        workers = max(1, len(os.sched_getaffinity(0)))
        with ProcessPoolExecutor(workers) as pool:  # scenes are independent: render them on every core
            for domain, split, count, code in syn.splits(bench.train_images, bench.val_images, bench.target_images,
                                                         bench.generic_images, bench.generic_val_images):
                if domain not in (bench.source, "generic") and domain not in bench.targets:
                    continue
                keys = [(seed, code, i) for i in range(count)]
                scenes = pool.map(syn.render_png, [domain] * count, keys, [bench.image_size] * count,
                                  chunksize=64)  # PNG-encoded in the workers too
                yield domain, split, count, ((f"{domain}_{split}_{i:06d}", *scene) for i, scene in enumerate(scenes))
    return info, records()


ADAPTERS.add("real", real.real_adapter)  # GTA5, Cityscapes, BDD100K, Mapillary, ACDC, SYNTHIA, UrbanSyn, ISPRS
