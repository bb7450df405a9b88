#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes nit/*.pt (tiny NiT state dicts saved by torch.save), nit/*_io.safetensors (inputs and
the outputs of the *official* forward passes) and nit/*.json (the configuration each case was
built with) for the NiT reference tests.

    /usr/bin/python3 make_nit_fixtures.py OFFICIAL_DIR

OFFICIAL_DIR layout (none of it is committed: only its outputs are):

    OFFICIAL_DIR/NiT/     checkout of github.com/WZDTHU/NiT (commit 33ff1c7, 2025-06-04), used
                          unmodified: nit/models/c2i/nit_model.py, nit/models/utils/funcs.py and
                          nit/models/utils/pos_embeds/rope.py are imported.
    OFFICIAL_DIR/stubs/   stand-ins for what Debian 12's python3-torch (1.13) lacks:
        torch_compat.py   nn.LayerNorm(bias=False) back-port (not used by NiT) and
                          F.scaled_dot_product_attention (not used by NiT)
        timm/             timm 0.9 layers: timm.models.vision_transformer.{PatchEmbed, Mlp}
                          (PatchEmbed: Conv2d kernel = stride = patch, flatten(2).transpose(1, 2))
        einops/           rearrange / repeat (plain reshape / permute / expand)
        flash_attn/       flash_attn_varlen_func computed exactly: for each segment of cu_seqlens,
                          softmax(q k^T / sqrt(head_dim)) v over (tokens, heads, head_dim)

No monkeypatch: the official modules run unchanged (hw_list is fed as int32, as the official
collate / sampler build it; it is stored as int64).

Packing (the official collate_fn and sampler): image i, a latent (C, h*p, w*p), becomes
rearrange('c (h p1) (w p2) -> (h w) c p1 p2'), token = row * w + column, and the images are
concatenated: x (sum h*w, C, p, p). The output has the same layout.

Weights: the official model is built with torch.manual_seed(0), then every parameter is refilled
from torch.Generator seeded with SEED (randn * STD; q/k norm weights 1 + 0.1 randn) so that the
zero-initialised adaLN / final layers do not hide anything. The models are tiny (hidden 32, two
heads of 16, so that each .pt stays under 300 KB).
"""
import json
import os
import sys

import torch

from make_dit_fixtures import write_safetensors  # F32 / I64 writer, the stdlib dtype order

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "nit")
STD = 0.1
SEED = 4321

# configs/c2i/nit_*.yaml, tiny
TINY = dict(input_size=32, in_channels=4, hidden_size=32, depth=2, num_heads=2, mlp_ratio=4.0,
            class_dropout_prob=0.1, num_classes=10, encoder_depth=1, projector_dim=32, z_dim=16,
            qk_norm=True)
SIZES = [(4, 4), (3, 5), (5, 2)]          # token grids (h, w) of the packed batch
ROPE_METHODS = ["linear", "ntk-aware", "ntk-by-parts", "yarn", "ntk-aware-pro1", "ntk-aware-pro2"]
ROPE_SCALE_ONLY = ["scale1", "scale2"]    # normal frequencies, cos/sin times proportion1 / proportion2
ORI_MAX_PE_LEN = 4
ROPE_MAX_PE = (6, 8)                      # (max_pe_len_h, max_pe_len_w) of the rope cases
ROPE_SIZES = [(6, 8), (5, 7), (3, 2)]


def build(nm, cfg):
    torch.manual_seed(0)
    return nm.NiT(**cfg).eval()


def randomise(model):
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            noise = torch.randn(prm.shape, generator=g)
            if name.endswith("norm.weight"):
                prm.copy_(1.0 + 0.1 * noise)
            else:
                prm.copy_(STD * noise)


def pack(sizes, p, c, seed):
    g = torch.Generator().manual_seed(seed)
    images, tokens = [], []
    for h, w in sizes:
        img = torch.randn(c, h * p, w * p, generator=g)
        images.append(img)
        tokens.append(img.reshape(c, h, p, w, p).permute(1, 3, 0, 2, 4).reshape(h * w, c, p, p))
    return images, torch.cat(tokens)


def run(model, x, t, y, sizes):
    """The official forward; also captures the (2, N) position grid get_rope hands to the rope."""
    hw_list = torch.tensor(sizes, dtype=torch.int32)
    seen = {}
    rope = model.rope
    inner = rope.get_cached_2d_rope_from_grid

    def capture(grid):
        seen["grid"] = grid
        return inner(grid)
    rope.get_cached_2d_rope_from_grid = capture
    try:
        with torch.no_grad():
            out = model(x, t, y, hw_list)
            cos, sin = model.get_rope(hw_list)
    finally:
        del rope.get_cached_2d_rope_from_grid
    return out, seen["grid"].long(), cos.squeeze(1), sin.squeeze(1)


def rope_info(model):
    r = model.rope
    info = {"freqs_h": r.freqs_h.tolist(), "freqs_w": r.freqs_w.tolist()}
    for k in ("mscale", "proportion1", "proportion2"):
        if hasattr(r, k):
            info[k] = float(getattr(r, k))
    return info


def write_json(name, cfg, extra):
    info = dict(cfg)
    info.update(extra)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def common_json(model, cfg):
    return {
        "head_dim": cfg["hidden_size"] // cfg["num_heads"],
        "out_channels": model.out_channels,
        "mlp_hidden": int(cfg["hidden_size"] * cfg["mlp_ratio"]),
        "mlp_act": "GELU(tanh)",
        "qk_norm": "nn.LayerNorm(head_dim): eps=1e-5, weight and bias, before RoPE",
        "norm": "LayerNorm(hidden, eps=1e-6, no weight, no bias)",
        "adaln_type": "lora" if cfg.get("use_adaln_lora") else "normal",
        "adaln_lora_dim": cfg.get("adaln_lora_dim"),
        "custom_freqs": cfg.get("custom_freqs", "normal"),
        "rope_theta": 10000,
        "null_class": cfg["num_classes"],
        "x_layout": "(sum h*w, C, p, p); image i = rearrange(latent_i, 'c (h p1) (w p2) -> (h w) c p1 p2')",
        "time_convention": "float t in [0, 1], 1 = noise, 0 = data (x_t = (1 - t) x0 + t eps, v = eps - x0)",
        "ignored": "projector.* (REPA head, only used when return_zs=True)",
        "weights_init": "official init with torch.manual_seed(0), then every parameter = %g * randn "
                        "(q/k norm weights 1 + 0.1 randn) from torch.Generator().manual_seed(%d)" % (STD, SEED),
    }


def case(nm, name, cfg, seed):
    model = build(nm, cfg)
    randomise(model)
    p = cfg["patch_size"]
    images, x = pack(SIZES, p, cfg["in_channels"], seed)
    t = torch.tensor([0.1, 0.5, 0.93])
    y = torch.tensor([3, 7, 10])
    out, pos, cos, sin = run(model, x, t, y, SIZES)
    tensors = dict(x=x, hw_list=torch.tensor(SIZES, dtype=torch.long), t=t, y=y, out=out,
                   rope_pos=pos, freqs_cos=cos, freqs_sin=sin)
    start = 0
    for i, ((h, w), img) in enumerate(zip(SIZES, images)):
        tensors["latent%d" % i] = img
        o = out[start:start + h * w]
        tensors["out_latent%d" % i] = o.reshape(h, w, -1, p, p).permute(2, 0, 3, 1, 4).reshape(-1, h * p, w * p)
        start += h * w
    torch.save(model.state_dict(), os.path.join(OUT, name + ".pt"))
    extra = common_json(model, cfg)
    extra.update(sizes=SIZES, rope=rope_info(model),
                 rope_pos="the (2, N) grid get_rope builds: rope_pos[0] indexes freqs_h (first head_dim/2 "
                          "channels), rope_pos[1] freqs_w (last head_dim/2); for token k of an h x w image: "
                          "(k % h, k // h)")
    write_json(name, cfg, extra)
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors)
    return model.state_dict()


def case_rope(nm, state, method, decouple, seed):
    name = "nit_rope_%s%s" % (method, "_decouple" if decouple else "")
    mh, mw = ROPE_MAX_PE
    cfg = dict(TINY, patch_size=1, custom_freqs=method, max_pe_len_h=mh, max_pe_len_w=mw, decouple=decouple,
               ori_max_pe_len=ORI_MAX_PE_LEN)
    model = build(nm, cfg)
    model.load_state_dict(state)
    _, x = pack(ROPE_SIZES, 1, cfg["in_channels"], seed)
    t = torch.tensor([0.25, 0.75, 0.5])
    y = torch.tensor([5, 10, 2])
    out, pos, cos, sin = run(model, x, t, y, ROPE_SIZES)
    tensors = dict(x=x, hw_list=torch.tensor(ROPE_SIZES, dtype=torch.long), t=t, y=y, out=out,
                   rope_pos=pos, freqs_cos=cos, freqs_sin=sin, freqs_h=model.rope.freqs_h, freqs_w=model.rope.freqs_w)
    extra = common_json(model, cfg)
    extra.update(sizes=ROPE_SIZES, weights="nit_p1.pt", rope=rope_info(model),
                 note="freqs_cos/freqs_sin: (N, head_dim), already multiplied by mscale (yarn) or "
                      "proportion1/2 (ntk-aware-pro1/2, scale1/2)")
    write_json(name, cfg, extra)
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors)


def main():
    official = os.path.abspath(sys.argv[1])
    sys.path[:0] = [os.path.join(official, "stubs"), os.path.join(official, "NiT")]
    import torch_compat  # noqa: F401
    import nit.models.c2i.nit_model as nm
    os.makedirs(OUT, exist_ok=True)
    state = case(nm, "nit_p1", dict(TINY, patch_size=1), 1)
    case(nm, "nit_p2", dict(TINY, patch_size=2), 2)
    case(nm, "nit_lora", dict(TINY, patch_size=1, use_adaln_lora=True, adaln_lora_dim=16), 3)
    for i, method in enumerate(ROPE_METHODS):
        for decouple in (False, True):
            case_rope(nm, state, method, decouple, 10 + i)
    for i, method in enumerate(ROPE_SCALE_ONLY):
        case_rope(nm, state, method, False, 20 + i)
    print("nit fixtures written")


if __name__ == "__main__":
    main()
