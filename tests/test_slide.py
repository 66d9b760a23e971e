import torch

from gkd.config import ModelConfig
from gkd.models.artifacts import new_segmenter
from gkd.models.backbone import create_backbone


def test_sliding_window_equals_direct_prediction_on_tiles():
    torch.manual_seed(0)
    seg = new_segmenter(create_backbone(ModelConfig("vit_tiny_patch16_224", 8, embed_dim=32, depth=2, num_heads=2),
                                        32, seed=0), "linear", 0, 4).eval()
    x = torch.rand(1, 3, 32, 80)
    with torch.no_grad():
        out = seg.predict(x)
        assert out.shape == (1, 4, 32, 80)
        # a window position that only one window covers equals the direct prediction of that window
        direct = seg.predict(x[..., :32])
        assert torch.allclose(out[..., :8], direct[..., :8], atol=1e-6)
        # square inputs of the model's size take the direct path
        assert torch.equal(seg.predict(x[..., :32]), direct)
