"""GKD (Lv et al., CVPR 2026): decoupled, query-based soft distillation of a VFM's representation.

Stage 1 (no labels): the student sees each image unmasked and — for the first half of the batch — with
⌊ratio·N⌋ random patch embeddings replaced by its mask token; three heads map student tokens to the
teacher's space and three MSE terms compare them with the teacher's tokens (``gkd.methods.representation``):
the CLS head is LayerNorm+Linear, the feature and patch heads are QSD heads,
QSD(S, T) = softmax(φ_q(S)·Tᵀ)·φ_v(S) (see heads.QSDHead), and the patch term is scored at every position.
For the CLS token the key set is the single teacher CLS, so its QSD reduces to φ_v: a LayerNorm+Linear
head. Stage 2 freezes the backbone and trains only the decoder on source labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gkd.config import ConfigError, choose
from gkd.methods.base import LabelFreeMethod, register_method
from gkd.methods.representation import RepresentationDistiller, RepresentationOptions


@dataclass(frozen=True)
class GKDOptions(RepresentationOptions):
    qsd: bool = True            # False: plain LayerNorm+Linear heads (ablation)
    qsd_temperature: float = 1.0  # divides the QSD attention logits (1: the paper, no scaling)
    qsd_query_init: str = "random"  # random | zero (every run starts from uniform routing)
    mask: bool = True           # False: the "masked" view is the unmasked one (ablation)
    stage2: str = "frozen"      # frozen | finetune (ablation)

    def __post_init__(self):
        super().__post_init__()
        choose("stage2 mode (method_configs.*.stage2)", self.stage2, ("frozen", "finetune"))
        choose("QSD query initialisation (method_configs.*.qsd_query_init)", self.qsd_query_init,
               ("random", "zero"))
        if not self.qsd_temperature > 0:
            raise ConfigError(f"qsd_temperature must be > 0, got {self.qsd_temperature}")


@register_method
class GKD(LabelFreeMethod):
    name = "gkd"
    display = "+GKD"
    Options = GKDOptions

    def stage1_module(self, student: nn.Module, teacher_dim: int) -> RepresentationDistiller:
        o = self.options
        if not o.mask and student.mask_token is not None:
            student.mask_token.requires_grad_(False)
        return RepresentationDistiller(student, teacher_dim, o.qsd, o.weights, o.qsd_temperature,
                                       qsd_query_init=o.qsd_query_init)

    @property
    def mask_ratio(self) -> float:
        return self.options.mask_ratio if self.options.mask else 0.0

    def frozen_backbone(self) -> bool:
        return self.options.stage2 == "frozen"
