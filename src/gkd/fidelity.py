"""Did stage 1 distil? Each loss term on held-out images, next to what predicting a constant achieves.

For every term (token, fea, patch) of a stage-1 module — through its heads, before they are thrown
away — on the plain view of held-out images of one domain:

* ``mse``: the term's element-mean squared error (the training loss, on images never trained on);
* ``baseline``: the same error of the constant prediction "the teacher's mean token on the training
  images" (what heads that learned only a bias reach);
* ``r2 = 1 − mse / Var``, with Var the element-mean variance of the teacher's targets in that domain:
  the share of the teacher's token variance the student reproduces (0: no better than the domain's
  own mean token; 1: the teacher exactly).

Held-out masks are drawn per image (seeded by the image index) at the method's ratio, for every image:
the patch term measures the masked prediction that the training loss asks for.

The heads are part of the method (GKD's QSD heads route each output through a softmax over the
teacher's tokens), so a second number looks at the backbone alone: a *linear probe* — ridge regression
from the student's patch tokens to the teacher's, cross-fitted within each held-out domain (``probe_r2``).
The same probe of the student *before* stage 1 says how much stage 1 added.
"""
from __future__ import annotations

import numpy as np
import torch

TERMS = ("token", "fea", "patch")


def masks(indices: torch.Tensor, num_patches: int, ratio: float, seed: int) -> torch.Tensor:
    """B×N: ⌊ratio·N⌋ hidden positions per image, a pure function of (seed, image index)."""
    out = torch.zeros(len(indices), num_patches, dtype=torch.bool)
    k = int(ratio * num_patches)
    if k:
        for row, i in enumerate(indices.tolist()):
            out[row, torch.from_numpy(np.random.default_rng([seed, i]).permutation(num_patches)[:k])] = True
    return out


def constant_predictions(train_cache, batch: int = 512) -> dict[str, torch.Tensor]:
    """The teacher's mean CLS and mean patch token over every cached training view."""
    n = train_cache.num_images * train_cache.views
    cls, patch = 0.0, 0.0
    for start in range(0, train_cache.num_images, batch):
        idx = np.arange(start, min(train_cache.num_images, start + batch))
        for v in range(train_cache.views):
            t = train_cache.get("tokens", idx, np.full_like(idx, v))
            cls = cls + t[:, 0].sum(0)
            patch = patch + t[:, 1:].mean(1).sum(0)
    return {"cls": cls / n, "patch": patch / n}


@torch.no_grad()
def measure(module, dataset, cache, constant: dict[str, torch.Tensor], mask_ratio: float, batch_size: int,
            seed: int = 0, device="cpu") -> dict[str, dict[str, float]]:
    """{term: {mse, baseline, r2}} of ``module`` (a stage-1 module) on ``dataset`` vs its cached tokens."""
    was_training = module.training
    module.eval()
    sums: dict[str, dict] = {}
    grid = module.student.num_patches
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(len(dataset), start + batch_size))
        images = torch.stack([dataset[int(i)][0] for i in idx]).to(device).float() / 255.0
        target = cache.get("tokens", idx.numpy()).to(device)
        mask = masks(idx, grid, mask_ratio, seed).to(device)
        const = torch.cat([constant["cls"][None], constant["patch"][None].expand(grid, -1)]).to(device)
        baseline = {"token": const[0], "fea": const, "patch": const[1:]}
        full = {"token": target[:, 0], "fea": target, "patch": target[:, 1:]}
        for name, (pred, tgt) in module.predictions(images, target, mask).items():
            base = baseline[name].expand_as(full[name])
            if base.shape != tgt.shape:  # a term scored at masked positions only (Proteus' patch loss)
                base = base[mask]
            flat = tgt.reshape(-1, tgt.shape[-1]).double()
            s = sums.setdefault(name, {"sse": 0.0, "base": 0.0, "n": 0, "s1": 0.0, "s2": 0.0})
            s["sse"] += (pred - tgt).double().pow(2).sum().item()
            s["base"] += (base - tgt).double().pow(2).sum().item()
            s["n"] += flat.shape[0]
            s["s1"] = s["s1"] + flat.sum(0)
            s["s2"] = s["s2"] + flat.pow(2).sum(0)
    module.train(was_training)
    out = {}
    for name in TERMS:
        s = sums[name]
        d = s["s1"].numel()
        var = float(((s["s2"] / s["n"]) - (s["s1"] / s["n"]) ** 2).mean())
        mse = s["sse"] / (s["n"] * d)
        out[name] = {"mse": round(mse, 5), "baseline": round(s["base"] / (s["n"] * d), 5),
                     "r2": round(1.0 - mse / var, 5)}
    return out


@torch.no_grad()
def tokens(backbone, dataset, batch_size: int, device="cpu", limit: int | None = None) -> torch.Tensor:
    """Final-norm tokens (N×(1+P)×D) of the plain view of the first ``limit`` images of ``dataset``."""
    was_training = backbone.training
    backbone.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    out = []
    for start in range(0, n, batch_size):
        images = torch.stack([dataset[i][0] for i in range(start, min(n, start + batch_size))]).to(device)
        out.append(backbone.forward_tokens(images.float() / 255.0, with_levels=False)[0].cpu())
    backbone.train(was_training)
    return torch.cat(out)


def probe_r2(student: torch.Tensor, teacher: torch.Tensor, ridge: float = 1e-2) -> float:
    """Share of the teacher's patch-token variance that a linear map recovers from the student's patch tokens
    (N×(1+P)×D each) of one domain: ridge regression cross-fitted over two halves of the images (even /
    odd), R² of the pooled out-of-fold predictions. Within a domain, so it measures what the student's
    tokens carry about the teacher's on those images — not how one map transfers across domains."""
    s = student[:, 1:].double()
    t = teacher[:, 1:].double()
    pred = torch.empty_like(t)
    for fold in (0, 1):
        fit, held = torch.arange(len(s)) % 2 != fold, torch.arange(len(s)) % 2 == fold
        x = s[fit].reshape(-1, s.shape[-1])
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        gram = x.T @ x
        lam = ridge * gram.diagonal().mean()
        w = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), x.T @ t[fit].reshape(-1, t.shape[-1]))
        xh = s[held].reshape(-1, s.shape[-1])
        pred[held] = (torch.cat([xh, torch.ones(len(xh), 1, dtype=xh.dtype)], dim=1) @ w).reshape(pred[held].shape)
    flat = t.reshape(-1, t.shape[-1])
    return round(float(1 - (pred.reshape(-1, t.shape[-1]) - flat).pow(2).mean() / flat.var(dim=0, unbiased=False).mean()), 5)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same items (n×d1, n×d2): 1 when one is a
    rotation and scaling of the other, near 0 when unrelated. Invariant to the widths differing, so it compares
    a student with its own initialisation and with the teacher alike (Kornblith et al., 2019)."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).pow(2).sum()
    return round(float(cross / ((x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt())), 5)


def patch_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """``linear_cka`` over every patch token of every image (N×(1+P)×D tokens, CLS left out)."""
    return linear_cka(a[:, 1:].reshape(-1, a.shape[-1]), b[:, 1:].reshape(-1, b.shape[-1]))


@torch.no_grad()
def routing(module, dataset, cache, mask_ratio: float, batch_size: int, seed: int = 0, device="cpu") -> dict:
    """How sharp the QSD heads' attention is on ``dataset``: per head, the mean entropy of a query's weights over
    the teacher's tokens as a share of its maximum log N (0: one-hot, 1: uniform) and the mean largest weight.
    Empty for a module without QSD heads."""
    heads = {name: getattr(module, f"{name}_head") for name in ("fea", "patch")
             if hasattr(getattr(module, f"{name}_head", None), "attention")}
    if not heads:
        return {}
    was_training = module.training
    module.eval()
    sums = {name: [0.0, 0.0, 0] for name in heads}
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(len(dataset), start + batch_size))
        images = torch.stack([dataset[int(i)][0] for i in idx]).to(device).float() / 255.0
        target = cache.get("tokens", idx.numpy()).to(device).float()
        mask = masks(idx, module.student.num_patches, mask_ratio, seed).to(device)
        s_u, s_m = module.student_views(images, mask)
        for name, head in heads.items():
            w = head.attention((s_u if name == "fea" else s_m)[:, 1:], target[:, 1:]).double()
            entropy = -(w * w.clamp_min(1e-30).log()).sum(-1) / np.log(w.shape[-1])
            sums[name][0] += entropy.sum().item()
            sums[name][1] += w.max(-1).values.sum().item()
            sums[name][2] += entropy.numel()
    module.train(was_training)
    return {name: {"entropy": round(e / n, 5), "max_weight": round(m / n, 5)} for name, (e, m, n) in sums.items()}
