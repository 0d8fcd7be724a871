"""Real Hugging Face architectures (small configs, random weights) through comb + prune."""

from __future__ import annotations

import warnings

import pytest
import torch

import cpd

pytest.importorskip("transformers")
from cpd.io import open_model  # noqa: E402

VIT = "hidden_size=64&num_hidden_layers=2&num_attention_heads=4&intermediate_size=128&image_size=32&patch_size=8"
ZOO = {
    "vit": f"hf:vit?{VIT}",
    "deit": f"hf:deit?{VIT}",
    "beit": f"hf:beit?{VIT}&use_relative_position_bias=true",
    "dinov2": "hf:dinov2?hidden_size=64&num_hidden_layers=2&num_attention_heads=4&image_size=32&patch_size=8&mlp_ratio=2",
    "swin": "hf:swin?image_size=32&patch_size=2&embed_dim=16&depths=[1,1]&num_heads=[2,4]&window_size=4",
    "convnext": "hf:convnext?hidden_sizes=[16,32]&depths=[1,1]&num_stages=2&image_size=32",
    "resnet": "hf:resnet?hidden_sizes=[16,32]&depths=[1,1]&embedding_size=16",
    "segformer": "hf:segformer?num_encoder_blocks=2&depths=[1,1]&sr_ratios=[2,1]&hidden_sizes=[16,32]"
                     "&num_attention_heads=[1,2]&decoder_hidden_size=32&mlp_ratios=[2,2]"
                     "&patch_sizes=[7,3]&strides=[4,2]",
    "mobilenet_v2": "hf:mobilenet_v2?image_size=32&depth_multiplier=0.35",
    "regnet": "hf:regnet?hidden_sizes=[16,32]&depths=[1,1]&embedding_size=16&groups_width=8",
}
# Python-level couplings the trace alone cannot see (a size read from another
# tensor's shape, attributes with equal values, derived head sizes, model checks),
# settled by the rehearsal on fake tensors; and the as_strided / fold ops.
ZOO.update({
    "pvt": "hf:pvt?depths=[1,1]&hidden_sizes=[16,32]&num_attention_heads=[1,2]"
           "&sequence_reduction_ratios=[2,1]&mlp_ratios=[2,2]&num_encoder_blocks=2"
           "&patch_sizes=[4,2]&strides=[4,2]&image_size=32",
    "pvt_v2": "hf:pvt_v2?depths=[1,1]&hidden_sizes=[16,32]&num_attention_heads=[1,2]&sr_ratios=[2,1]"
              "&mlp_ratios=[2,2]&num_encoder_blocks=2&patch_sizes=[7,3]&strides=[4,2]&image_size=32",
    "cvt": "hf:cvt?embed_dim=[16,24]&num_heads=[1,3]&depth=[1,2]&patch_sizes=[7,3]"
           "&patch_stride=[4,2]&patch_padding=[2,1]&mlp_ratio=[2.0,2.0]"
           "&attention_drop_rate=[0.0,0.0]&drop_rate=[0.0,0.0]&drop_path_rate=[0.0,0.0]"
           "&qkv_bias=[true,true]&cls_token=[false,true]"
           "&qkv_projection_method=[\"dw_bn\",\"dw_bn\"]&kernel_qkv=[3,3]&padding_kv=[1,1]"
           "&stride_kv=[2,2]&padding_q=[1,1]&stride_q=[1,1]",
    "levit": "hf:levit?image_size=64&hidden_sizes=[32,48]&num_attention_heads=[2,3]&depths=[1,1]"
             "&key_dim=[8,8]&drop_path_rate=0&mlp_ratio=[2,2]&attention_ratio=[2,2]"
             "&down_ops=[[\"Subsample\",8,2,2,2,2]]",
    "siglip": "hf:siglip?vision_config={\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
              "\"intermediate_size\":128,\"image_size\":32,\"patch_size\":8}",
    "mobilevitv2": "hf:mobilevitv2?image_size=64&width_multiplier=0.25",
    "focalnet": "hf:focalnet?image_size=32&embed_dim=16&depths=[1,1]&hidden_sizes=[16,32]"
                "&patch_size=4",
})
INPUT_SHAPES = {"cvt": (1, 3, 64, 64)}  # CvtConfig has no image_size

# Attention models whose heads must be pruned (not only their MLPs).
HEADS = {"vit", "deit", "beit", "dinov2", "swin", "segformer", "pvt", "pvt_v2", "cvt", "levit",
         "siglip"}


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_prune_real_architecture(arch: str) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = open_model(ZOO[arch], input_shape=INPUT_SHAPES.get(arch))
        model, x = loaded.model.eval(), loaded.example_inputs()
        with torch.no_grad():
            model(**x)  # a forward first, as users do (LeViT caches its attention biases)
        comb = cpd.comb(model, x)
        res = cpd.prune(model, x, ratio=0.5)
    assert comb.unknown_ops == {}, comb.unknown_ops
    assert comb.checks["clean"], comb.checks
    assert res.rolled_back == [], [comb.group(g).modules[:2] for g in res.rolled_back]
    assert res.macs[1] < 0.8 * res.macs[0]
    with torch.no_grad():
        before, after = model(**x) if isinstance(x, dict) else model(x), None
        after = res.model(**x) if isinstance(x, dict) else res.model(x)
    assert before.logits.shape == after.logits.shape
    if arch in HEADS:
        heads = [g for g in comb.prunable() if g.role == "heads"]
        assert heads, "attention heads were found"
        assert all(g.id in res.plan.keep for g in heads), "every head group was pruned"
