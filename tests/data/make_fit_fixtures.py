#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes fit/*.pt (tiny FiT / FiTv2 state dicts saved by torch.save), fit/*_io.safetensors
(inputs and the outputs of the *official* forward passes) and fit/*.json (the configuration
each case was built with) for the FiT reference tests.

    /usr/bin/python3 make_fit_fixtures.py OFFICIAL_DIR

OFFICIAL_DIR layout (none of it is committed: only its outputs are):

    OFFICIAL_DIR/FiT/     checkout of github.com/whlzy/FiT (commit b22b7b0, 2024-11-10), used
                          unmodified: fit/model/{fit_model,modules,rope,norms,utils}.py and
                          fit/utils/eval_utils.py are imported.
    OFFICIAL_DIR/stubs/   stand-ins for what Debian 12's python3-torch (1.13) lacks:
        torch_compat.py   nn.LayerNorm(bias=False) (torch >= 2.1: weight only, no bias) and
                          F.scaled_dot_product_attention (explicit softmax(q k^T / sqrt(d)) v; a
                          boolean mask means True = attend)
        timm/             timm 0.9 layers: timm.layers.mlp.{Mlp, SwiGLU} (SwiGLU: fc1_g, fc1_x,
                          act = SiLU, fc2; act(fc1_g(x)) * fc1_x(x)), timm.models.vision_transformer
        einops/           rearrange / repeat (plain reshape / permute / expand)
        triton/           empty modules (fit/model/norms.py imports triton at module level)
        fit/model/sincos.py  fit_model.py imports this file, which the release lacks; never used
        safetensors/, PIL/, tqdm/  empty modules (imported by fit/utils/eval_utils.py, unused)

The official files are used unchanged. One monkeypatch only, for the `*_noclamp` outputs:
FiT.forward starts with `t = clamp(ts * t / (1 + (ts - 1) * t), max=1.0)` (time_shifting ts,
default 1), which clamps FiT v1's integer DDPM timesteps (0..999) to 1.0. The `_noclamp` outputs
re-run the same forward with `torch.clamp` in fit_model's namespace replaced by the identity, i.e.
what the model computes when t reaches the timestep embedder unchanged.

Weights: the official model is built with torch.manual_seed(0), then every parameter is refilled
from torch.Generator seeded with SEED (randn * STD; norm weights 1 + 0.1 randn) so that the
zero-initialised adaLN / final layers do not hide anything. The models are tiny (hidden 32, two
heads of 16, so that each .pt stays under 300 KB).
"""
import json
import os
import sys

import torch

from make_dit_fixtures import write_safetensors  # F32 / I64 writer, the stdlib dtype order

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fit")
STD = 0.1
SEED = 1234

TINY = dict(context_size=256, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2,
            mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10)
# configs/fit/config_fit_xl.yaml, tiny
FIT_V1 = dict(TINY, learn_sigma=True, use_swiglu=True, use_swiglu_large=True, rel_pos_embed="rope")
# configs/fitv2/config_fitv2_xl.yaml, tiny (lora rank 16)
FIT_V2 = dict(TINY, learn_sigma=False, use_sit=True, use_swiglu=True, use_swiglu_large=False,
              q_norm="layernorm", k_norm="layernorm", qk_norm_weight=False, rel_pos_embed="rope",
              adaln_type="lora", adaln_lora_dim=16)
SIZES = [(4, 4), (2, 6), (3, 5)]          # token grids (h, w) of the padded batch
N_PAD = 20                                # padded length (every row has padding; N != p*p*C)
ROPE_METHODS = ["linear", "ntk-aware", "ntk-by-parts", "yarn", "ntk-aware-pro1", "ntk-aware-pro2"]
ORI_MAX_PE_LEN = 4
# (max_pe_len_h, max_pe_len_w) the model is built with, and the token grids run through it
ROPE_RUNS = [((6, 8), [(6, 8), (5, 7)]), ((8, 8), [(8, 8)])]


def build(fm, cfg):
    torch.manual_seed(0)
    model = fm.FiT(**cfg).eval()
    return model


def randomise(model):
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            noise = torch.randn(prm.shape, generator=g)
            if name.endswith("norm.weight"):
                prm.copy_(1.0 + 0.1 * noise)
            else:
                prm.copy_(STD * noise)


def batch(sizes, p, c, sit, seed, n_max=None):
    """x (B, N, p*p*C) if sit else (B, p*p*C, N); grid (B, 2, N) long: grid[:, 0] the column,
    grid[:, 1] the row (as sample_fit*_ddp.py builds it), 0 at padding; mask (B, N) float;
    size (B, 1, 2) long (h, w). Padding in x is random garbage."""
    g = torch.Generator().manual_seed(seed)
    n_max = n_max or max(h * w for h, w in sizes)
    b = len(sizes)
    x = torch.randn(b, n_max, p * p * c, generator=g)
    grid = torch.zeros(b, 2, n_max, dtype=torch.long)
    mask = torch.zeros(b, n_max)
    for i, (h, w) in enumerate(sizes):
        n = h * w
        x[i, n:] = 5.0 * torch.randn(n_max - n, p * p * c, generator=g)  # garbage
        k = torch.arange(n)
        grid[i, 0, :n] = k % w
        grid[i, 1, :n] = k // w
        mask[i, :n] = 1.0
    size = torch.tensor(sizes, dtype=torch.long)[:, None, :]
    if not sit:
        x = x.transpose(1, 2).contiguous()
    return x, grid, mask, size


class _NoClampTorch:
    """torch, except clamp is the identity (see the module docstring)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def clamp(x, *args, **kwargs):
        return x


def run(fm, model, fn, *args, noclamp=False, **kwargs):
    saved = fm.torch
    if noclamp:
        fm.torch = _NoClampTorch()
    try:
        with torch.no_grad():
            return getattr(model, fn)(*args, **kwargs)
    finally:
        fm.torch = saved


def rope_info(model):
    r = model.rel_pos_embed
    info = {"freqs_h": r.freqs_h.tolist(), "freqs_w": r.freqs_w.tolist()}
    for k in ("mscale", "proportion1", "proportion2"):
        if hasattr(r, k):
            info[k] = float(getattr(r, k))
    return info


def save_case(name, model, cfg, tensors, extra):
    torch.save(model.state_dict(), os.path.join(OUT, name + ".pt"))
    write_json(name, cfg, extra)
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors)


def write_json(name, cfg, extra):
    info = dict(cfg)
    info.update(extra)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def common_json(model, cfg):
    d = cfg["hidden_size"]
    mlp_hidden = int(d * cfg["mlp_ratio"])
    return {
        "head_dim": d // cfg["num_heads"],
        "out_channels": model.out_channels,
        "swiglu_hidden": mlp_hidden if cfg.get("use_swiglu_large") else (mlp_hidden * 2) // 3,
        "qk_norm": "LayerNorm(head_dim, eps=1e-6, no weight, no bias)" if cfg.get("q_norm") else None,
        "norm": "LayerNorm(hidden, eps=1e-6, no weight, no bias)",
        "adaln_type": cfg.get("adaln_type", "normal"),
        "adaln_lora_dim": cfg.get("adaln_lora_dim"),
        "custom_freqs": cfg.get("custom_freqs", "normal"),
        "rope_theta": 10000.0,
        "time_shifting": 1,
        "online_rope": False,
        "null_class": cfg["num_classes"],
        "x_layout": "(B, N, p*p*C)" if cfg.get("use_sit") else "(B, p*p*C, N)",
        "token_channel_order": "(c p1 p2)",
        "weights_init": "official init with torch.manual_seed(0), then every parameter = %g * randn "
                        "(norm weights 1 + 0.1 randn) from torch.Generator().manual_seed(%d)" % (STD, SEED),
    }


def case_v1(fm):
    cfg = FIT_V1
    model = build(fm, cfg)
    randomise(model)
    x, grid, mask, size = batch(SIZES, 2, 4, False, 11, N_PAD)
    t = torch.tensor([999, 500, 17])
    y = torch.tensor([3, 7, 10])
    out = run(fm, model, "forward", x, t, y, grid, mask, size)
    out_nc = run(fm, model, "forward", x, t, y, grid, mask, size, noclamp=True)
    # forward_with_cfg: 2B rows, second half = first half (as sample_fit_ddp.py passes cat([z, z]))
    cs = [(4, 4), (3, 5)]
    xc, gc, mc, sc = batch(cs, 2, 4, False, 12, N_PAD)
    xc, gc, mc, sc = [torch.cat([a, a]) for a in (xc, gc, mc, sc)]
    tc = torch.tensor([999, 250, 999, 250])
    yc = torch.tensor([3, 7, 10, 10])
    cfg_scale = 4.0
    out_cfg = run(fm, model, "forward_with_cfg", xc, tc, yc, gc, mc, sc, cfg_scale)
    out_cfg_nc = run(fm, model, "forward_with_cfg", xc, tc, yc, gc, mc, sc, cfg_scale, noclamp=True)
    cos, sin = model.rel_pos_embed.get_cached_2d_rope_from_grid(grid)
    tensors = dict(x=x, grid=grid, mask=mask, size=size, t=t, y=y, out=out, out_noclamp=out_nc,
                   freqs_cos=cos, freqs_sin=sin,
                   x_cfg=xc, grid_cfg=gc, mask_cfg=mc, size_cfg=sc, t_cfg=tc, y_cfg=yc,
                   out_cfg=out_cfg, out_cfg_noclamp=out_cfg_nc)
    extra = common_json(model, cfg)
    extra.update(sizes=SIZES, sizes_cfg=cs * 2, padded_len=N_PAD, cfg_scale=cfg_scale, scale_pow=0.0,
                 cfg_channels="first 3*p*p channels of dim 1 (the first 3 latent channels)",
                 time_convention="integer DDPM timestep 0..999 as fed; official forward clamps t to <= 1.0 "
                                 "(out, out_cfg); out_noclamp / out_cfg_noclamp skip the clamp",
                 rope=rope_info(model))
    save_case("fit_v1", model, cfg, tensors, extra)


def case_v2(fm):
    cfg = FIT_V2
    model = build(fm, cfg)
    randomise(model)
    x, grid, mask, size = batch(SIZES, 2, 4, True, 21, N_PAD)
    t = torch.tensor([0.1, 0.5, 0.93])
    y = torch.tensor([3, 7, 10])
    out = run(fm, model, "forward", x, t, y, grid, mask, size)
    model.time_shifting = 3
    out_ts = run(fm, model, "forward", x, t, y, grid, mask, size)
    model.time_shifting = 1
    cs = [(4, 4), (3, 5)]
    xc, gc, mc, sc = batch(cs, 2, 4, True, 22, N_PAD)
    xc, gc, mc, sc = [torch.cat([a, a]) for a in (xc, gc, mc, sc)]
    tc = torch.tensor([0.3, 0.8, 0.3, 0.8])
    yc = torch.tensor([3, 7, 10, 10])
    cfg_scale = 4.0
    out_cfg = run(fm, model, "forward_with_cfg", xc, tc, yc, gc, mc, sc, cfg_scale)
    out_cfg_pow = run(fm, model, "forward_with_cfg", xc, tc, yc, gc, mc, sc, cfg_scale, scale_pow=2.0)
    cos, sin = model.rel_pos_embed.get_cached_2d_rope_from_grid(grid)
    tensors = dict(x=x, grid=grid, mask=mask, size=size, t=t, y=y, out=out, out_tshift3=out_ts,
                   freqs_cos=cos, freqs_sin=sin,
                   x_cfg=xc, grid_cfg=gc, mask_cfg=mc, size_cfg=sc, t_cfg=tc, y_cfg=yc,
                   out_cfg=out_cfg, out_cfg_pow2=out_cfg_pow)
    extra = common_json(model, cfg)
    extra.update(sizes=SIZES, sizes_cfg=cs * 2, padded_len=N_PAD, cfg_scale=cfg_scale, scale_pow=0.0,
                 scale_pow_of_out_cfg_pow2=2.0,
                 time_shifting_of_out_tshift3=3,
                 cfg_channels="first 3*p*p channels of the last dim (the first 3 latent channels)",
                 time_convention="float t in [0, 1], 0 = noise, 1 = data (SiT linear path)",
                 rope=rope_info(model))
    save_case("fitv2", model, cfg, tensors, extra)
    return model.state_dict()


def case_rope(fm, state, method, decouple):
    name = "fitv2_rope_%s%s" % (method, "_decouple" if decouple else "")
    tensors, runs = {}, []
    for r, ((mh, mw), sizes) in enumerate(ROPE_RUNS):
        cfg = dict(FIT_V2, custom_freqs=method, max_pe_len_h=mh, max_pe_len_w=mw, decouple=decouple,
                   ori_max_pe_len=ORI_MAX_PE_LEN, online_rope=False)
        model = build(fm, cfg)
        model.load_state_dict(state)
        x, grid, mask, size = batch(sizes, 2, 4, True, 100 + 10 * r + ROPE_METHODS.index(method))
        t = torch.tensor([0.25, 0.75][:len(sizes)])
        y = torch.tensor([5, 10][:len(sizes)])
        out = run(fm, model, "forward", x, t, y, grid, mask, size)
        cos, sin = model.rel_pos_embed.get_cached_2d_rope_from_grid(grid)
        info = rope_info(model)
        for k, v in dict(x=x, grid=grid, mask=mask, size=size, t=t, y=y, out=out, freqs_cos=cos, freqs_sin=sin,
                         freqs_h=model.rel_pos_embed.freqs_h, freqs_w=model.rel_pos_embed.freqs_w).items():
            tensors["%d.%s" % (r, k)] = v.float() if v.dtype == torch.float64 else v
        info.update(max_pe_len_h=mh, max_pe_len_w=mw, sizes=sizes)
        runs.append(info)
    extra = common_json(model, FIT_V2)
    extra.update(custom_freqs=method, decouple=decouple, ori_max_pe_len=ORI_MAX_PE_LEN, weights="fitv2.pt",
                 runs=runs, time_convention="float t in [0, 1], 0 = noise, 1 = data",
                 note="run r (tensor prefix 'r.') uses a model built with runs[r].max_pe_len_h/w; "
                      "freqs_cos/freqs_sin are get_cached_2d_rope_from_grid(grid): (B, N, head_dim), "
                      "already multiplied by mscale (yarn) or proportion1/2 (ntk-aware-pro1/2)")
    cfg = dict(FIT_V2, custom_freqs=method, decouple=decouple, ori_max_pe_len=ORI_MAX_PE_LEN)
    write_json(name, cfg, extra)
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors)


def main():
    official = os.path.abspath(sys.argv[1])
    sys.path[:0] = [os.path.join(official, "stubs"), os.path.join(official, "FiT")]
    import torch_compat  # noqa: F401  (before the models are built)
    import fit.model.fit_model as fm
    os.makedirs(OUT, exist_ok=True)
    case_v1(fm)
    state = case_v2(fm)
    for method in ROPE_METHODS:
        for decouple in (False, True):
            case_rope(fm, state, method, decouple)
    print("fit fixtures written")


if __name__ == "__main__":
    main()
