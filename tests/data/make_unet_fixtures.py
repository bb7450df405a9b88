#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes unet/*.pt and unet/ldm_cin.ckpt (tiny random-weight U-Nets: CompVis latent-diffusion's
openaimodel.UNetModel and openai guided-diffusion's unet.UNetModel), unet/*_io.safetensors (inputs
and the outputs of the *official* forward passes), unet/ldm_cin_ddim.safetensors (the official
LDM DDIMSampler run on the tiny class-conditional LDM) and unet/*.json (the configuration each case
was built with) for the U-Net reference tests.

    /usr/bin/python3 make_unet_fixtures.py OFFICIAL_DIR

OFFICIAL_DIR layout (none of it is committed: only its outputs are):

    OFFICIAL_DIR/latent-diffusion/   checkout of github.com/CompVis/latent-diffusion (commit a506df5,
                                     2022-07-27), used unmodified: ldm.modules.diffusionmodules
                                     .openaimodel (UNetModel), ldm.modules.attention
                                     (SpatialTransformer), ldm.modules.diffusionmodules.util
                                     (make_beta_schedule, make_ddim_timesteps, ...), ldm.modules
                                     .encoders.modules (ClassEmbedder) and ldm.models.diffusion.ddim
                                     (DDIMSampler) are imported; three functions of
                                     ldm/models/diffusion/ddpm.py are extracted (ast, see below).
    OFFICIAL_DIR/guided-diffusion/   checkout of github.com/openai/guided-diffusion (commit 22e0df8,
                                     2022-07-15), used unmodified: guided_diffusion.script_util
                                     (create_model, NUM_CLASSES) and guided_diffusion.unet (UNetModel)
                                     are imported (they need nothing that Debian 12 lacks).
    OFFICIAL_DIR/stubs-unet/         written by this script (STUBS below; a directory of its own, as
                                     make_autoencoder_fixtures.py's OFFICIAL_DIR/stubs holds a different
                                     einops stand-in), stand-ins for packages Debian 12 lacks, checked
                                     against the versions latent-diffusion's environment.yaml pins:
        einops/     einops 0.3.0: rearrange for exactly the four patterns the U-Net path calls
                    (SpatialTransformer 'b c h w -> b (h w) c' and 'b (h w) c -> b c h w' with h, w;
                    CrossAttention 'b n (h d) -> (b h) n d' and '(b h) n d -> b n (h d)' with h), done
                    as 0.3.0's TransformRecipe.apply does it: reshape to the elementary axes, permute,
                    reshape to the composed axes; a composed group (x y) is x-major, as in einops.
                    Anything else raises, and so do repeat (attention.py: masks only, never passed;
                    util.timestep_embedding: repeat_only=True only, never used) and reduce
                    (x_transformer.py imports it; never called). check_einops_stub() checks the four
                    patterns against an element-by-element construction of einops' definition.
        omegaconf/  omegaconf: listconfig.ListConfig, an empty class nothing is an instance of
                    (openaimodel.UNetModel imports it when context_dim is not None, only to turn a
                    ListConfig context_dim into a list; ours is an int).
        tqdm/       tqdm: tqdm(iterable, ...) returns the iterable (ddim.py wraps its time loop in a
                    progress bar; the real one yields the same items).
        clip/, kornia/  empty packages: ldm/modules/encoders/modules.py imports them at module level
                    for FrozenCLIPEmbedder / FrozenClipImageEmbedder only, never built here. With
                    them (and einops.reduce for ldm/modules/x_transformer.py) the *official*
                    ClassEmbedder is imported: no stand-in for it.
        PIL/        Pillow: empty Image, ImageDraw, ImageFont modules (ldm/util.py imports them at
                    module level for log_txt_as_img only, never called here).
    pytorch_lightning, torchvision and taming-transformers are not needed: LatentDiffusion / DDPM
    (ldm/models/diffusion/ddpm.py imports all three) are not instantiated. Instead three of their
    functions are extracted from ddpm.py with ast and run unchanged on stand-in objects:
        DDPM.register_schedule   on ScheduleHolder, a torch.nn.Module with DDPM's defaults
                                 v_posterior = 0. and parameterization = "eps": it registers the
                                 exact buffers (betas ... posterior_mean_coef2, float32 from its own
                                 to_torch = partial(torch.tensor, dtype=torch.float32), lvlb_weights
                                 non-persistent) that LatentDiffusion registers.
                                 LatentDiffusion.register_schedule only adds make_cond_schedule when
                                 num_timesteps_cond > 1 (cin256-v2: 1).
        DiffusionWrapper.forward on Wrapper (a Module holding diffusion_model = the UNet and
                                 conditioning_key = "crossattn"): cc = torch.cat(c_crossattn, 1);
                                 diffusion_model(x, t, context=cc).
        LatentDiffusion.apply_model  on LDMStandIn (the DDIMSampler's model): num_timesteps 1000,
                                 betas / alphas_cumprod / alphas_cumprod_prev from ScheduleHolder,
                                 device cpu, model = Wrapper, no split_input_params: a tensor cond
                                 becomes {"c_crossattn": [cond]} and goes to self.model(x, t, **cond).
                                 So apply_model(x, t, c) == unet(x, t, context=c) (asserted).
    CPUDDIMSampler: the official DDIMSampler with register_buffer overridden only to keep tensors on
    the CPU (the official one moves every tensor to CUDA); everything else is inherited unchanged.

No monkeypatch: the official classes run unchanged under torch.no_grad() in eval mode.

Weights: each official model is built with torch.manual_seed(0), then every parameter, in
named_parameters() order, is refilled from torch.Generator().manual_seed(SEEDS[case]["weights"]):
randn * 0.1, except the 1-D .weight of GroupNorm / LayerNorm *modules* (GroupNorm32, the
SpatialTransformer's GroupNorm, the BasicTransformerBlock LayerNorms; found by module type, not by
name) = 1 + 0.1 randn. The zero-initialised convs (ResBlock out_layers.3, AttentionBlock /
SpatialTransformer proj_out, out.2) are refilled like the rest. ldm_cin's ClassEmbedder (built
with torch.manual_seed(0) too) continues the same generator after the U-Net. Inputs come from
torch.Generator().manual_seed(SEEDS[case]["inputs"]). float32 throughout; timesteps / labels int64.

ldm_cin (a tiny cin256-v2: SpatialTransformer, cross-attention on a ClassEmbedder token):
    ldm_cin.ckpt            torch.save({"state_dict": OrderedDict, "global_step": 0}), the layout of
                            an LDM checkpoint, in the order LatentDiffusion.state_dict() gives: the
                            12 persistent schedule buffers of register_schedule (betas,
                            alphas_cumprod, alphas_cumprod_prev, sqrt_alphas_cumprod,
                            sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod,
                            sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
                            posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1,
                            posterior_mean_coef2; linear schedule, 1000 steps, linear_start 0.0015,
                            linear_end 0.0195 as cin256-v2), then "model.diffusion_model." + UNet
                            keys, "first_stage_model." + every tensor of
                            autoencoders/vq_compvis.pt (the tiny VQModelInterface), then
                            "cond_stage_model.embedding.weight". No scale_factor (cin256-v2 sets
                            neither scale_factor nor scale_by_std: 1.0, a plain attribute, no buffer),
                            no model_ema.* (use_ema False), no logvar (not a buffer).
    ldm_cin_io.safetensors  x (2,3,8,8), t [17, 981], y [3, 10] (10 = the null class), context
                            (2,1,16) = ClassEmbedder({"class_label": y}), out = unet(x, t,
                            context=context); context4 (2,4,16) randn, out_context4 = unet(x, t,
                            context=context4) (a 4-token context: with one token the cross-attention
                            softmax is 1 and to_q / to_k of attn2 do not reach the output);
                            x_wide (1,3,8,12), t_wide [500], y_wide [7], context_wide, out_wide.
    ldm_cin_ddim.safetensors  the official DDIMSampler.sample(S=10, batch_size=2, shape=(3,8,8),
                            conditioning=ClassEmbedder([4, 9]), eta=0, x_T=x_T,
                            log_every_t=1, unconditional_guidance_scale=3.0,
                            unconditional_conditioning=ClassEmbedder([10, 10])) ("uniform"):
                            x_T (2,3,8,8), labels [4, 9], null_label [10], timesteps (10,) int64 =
                            ddim_timesteps = [1, 101, ..., 901] (range(0, 1000, 100) + 1, ascending),
                            x_inter (11,2,3,8,8) and pred_x0 (11,2,3,8,8): the sampler's
                            intermediates stacked: index 0 is x_T in *both* (ddim_sampling seeds both
                            lists with img), index i >= 1 is after step i, i.e. the update at
                            t = timesteps[10 - i] (901 first, 1 last): x_inter[i] = x_prev,
                            pred_x0[i] = that step's pred_x0; x_inter[10] == samples.
                            samples (2,3,8,8); samples_noguide: the same with
                            unconditional_guidance_scale 1.0 and no unconditional_conditioning.
    ldm_cin.json            unet kwargs (and the defaults not passed), heads / dim_head per
                            SpatialTransformer, cond_stage / first_stage configs, schedule, DDIM
                            settings.

ldm_attn (LDM UNetModel, AttentionBlock path, label_emb, AvgPool2d down, conv-free nearest up):
    ldm_attn.pt             torch.save(UNetModel.state_dict()).
    ldm_attn_io.safetensors x (2,4,8,8), t [0, 999], y [1, 8], out = unet(x, t, y=y); x_wide (1,4,12,8),
                            t_wide [250], y_wide [5], out_wide.
    ldm_attn.json           unet kwargs (and the defaults not passed), heads per AttentionBlock.

adm_cond (guided-diffusion, built by its own script_util.create_model; class-conditional, learned
sigma, scale-shift norm, ResBlock up/down, num_head_channels):
    adm_cond.pt             torch.save(UNetModel.state_dict()) (like 256x256_diffusion.pt).
    adm_cond_io.safetensors x (2,3,16,16), t [5, 900], y [0, 999], out (2,6,16,16) = unet(x, t, y);
                            x_wide (1,3,16,24), t_wide [400], y_wide [123], out_wide.
    adm_cond.json           create_model flags and the UNetModel kwargs create_model passes (checked:
                            UNetModel(**kwargs) under torch.manual_seed(0) gives the same tensors).

Checks (end of the script): every out*, samples* has std > 0.01 and no NaN; every safetensors file
reads back identical; every io / ddim output is reproduced exactly (max |diff| == 0) by a freshly
built official model into which the *saved* weights are loaded (load_state_dict strict; for
ldm_cin the U-Net, the ClassEmbedder and the schedule buffers come from ldm_cin.ckpt, whose
first_stage_model.* must equal vq_compvis.pt).

Facts for the C++ implementer (read in the code above, the numeric ones checked by this script):
  Normalisation
    - normalization(ch) = GroupNorm32(32, ch): eps 1e-5 (torch default), affine; forward is
      super().forward(x.float()).type(x.dtype) (statistics in float32 whatever the input dtype).
      Same in guided_diffusion/nn.py. Used by ResBlock, AttentionBlock, UNetModel.out.
    - SpatialTransformer.norm = attention.Normalize = torch.nn.GroupNorm(32, ch, eps=1e-6), no float
      cast. BasicTransformerBlock norm1/2/3 = nn.LayerNorm(dim) (eps 1e-5).
  Timestep embedding (both repos): half = dim // 2, freqs = exp(-ln(10000) * arange(half) / half)
    (float32), args = t.float()[:, None] * freqs, emb = cat([cos(args), sin(args)]) (cos first),
    odd dim zero-padded; time_embed = Linear(mc, 4mc), SiLU, Linear(4mc, 4mc); label_emb
    (nn.Embedding(num_classes, 4mc)) is added after that MLP.
  ResBlock (identical in both repos): in_layers = [GN, SiLU, conv3x3]; emb_layers = [SiLU,
    Linear(4mc, out or 2*out)]; out_layers = [GN, SiLU, Dropout, conv3x3]; scale-shift:
    h = GN(h) * (1 + scale) + shift with scale, shift = chunk(emb_out, 2) (scale first), else
    h = h + emb_out before out_layers; skip = Identity (same channels) / 1x1 conv (use_conv False) /
    3x3 conv (use_conv True, unused by UNetModel); up/down: h = in_layers[:-1](x), then h_upd(h),
    x_upd(x) (nearest x2 / AvgPool2d(2)) and only then in_layers[-1] (the conv).
  Down/Upsample (both repos): Downsample conv = Conv2d(3x3, stride 2, padding 1) (symmetric,
    unlike the autoencoder's pad (0,1,0,1)), else AvgPool2d(2, 2) (floor on odd sizes; state dict
    key .op for the conv, nothing for the pool); Upsample = F.interpolate(nearest, x2) then
    conv3x3 when conv_resample.
  AttentionBlock (identical in both repos): norm (GN32) -> qkv Conv1d(C, 3C, 1) on (B, C, H*W)
    (H-major flattening) -> attention -> proj_out Conv1d(C, C, 1) -> x + h. Both q and k are
    multiplied by ch^-1/4 (ch = channels per head); softmax in float32, cast back.
    QKVAttentionLegacy (use_new_attention_order False): qkv.reshape(B*heads, 3*ch, T).split(ch):
    the 3C channels are head-major, each head's [q, k, v] consecutive. QKVAttention (True):
    q, k, v = qkv.chunk(3) first (q = channels [0, C)), each then viewed as (B*heads, ch, T).
    Its forward always goes through checkpoint(..., True) (no numerical effect).
  Heads
    - ADM: AttentionBlock(num_heads, num_head_channels): heads = C // num_head_channels unless
      num_head_channels == -1, then num_heads (num_heads_upsample in the output blocks;
      num_heads_upsample == -1 -> num_heads). UNetModel default num_heads=1.
    - LDM (default num_heads=-1; one of num_heads / num_head_channels must be set): per attention
      site, if num_head_channels == -1: dim_head = ch // num_heads, else num_heads = ch //
      num_head_channels (this *overwrites* num_heads for all later sites) and dim_head =
      num_head_channels; then if legacy (default True): dim_head = ch // num_heads if
      use_spatial_transformer else num_head_channels. AttentionBlock gets (num_heads,
      num_head_channels=dim_head) in input/middle blocks and (num_heads_upsample, dim_head) in output
      blocks, so legacy + num_head_channels == -1 gives num_heads heads down/middle and
      num_heads_upsample heads up (ldm_attn: 2 and 1). Without legacy, num_head_channels = ch //
      num_heads reaches the AttentionBlock, so num_heads_upsample has no effect.
      SpatialTransformer(ch, num_heads, dim_head) always uses num_heads (never num_heads_upsample);
      legacy gives inner_dim = num_heads * (ch // num_heads) = ch (ldm_cin: 1 head of 32 / 64).
  Block layout (both repos): input_blocks.0.0 = conv3x3(in, ch0); per level, num_res_blocks x
    [ResBlock, attention if ds in attention_resolutions], then (not at the last level) one block
    [Downsample or ResBlock(down=True)] and ds *= 2; middle_block = [ResBlock, attention, ResBlock]
    (attention always, whatever attention_resolutions); output blocks per level (reversed),
    num_res_blocks + 1 x [ResBlock(ch + skip_ch -> mc * mult), attention if ds in
    attention_resolutions, + Upsample / ResBlock(up=True) on the last one except at level 0, then
    ds //= 2]; every input block's output is pushed as a skip (input_blocks.0 and the down blocks
    too) and popped as h = cat([h, skip], dim=1) (h first); out = [GN, SiLU, conv3x3].
    Parameter-free layers (AvgPool2d, Upsample without conv) still take a Sequential index, e.g.
    ldm_attn has no input_blocks.2.* key and output_blocks.1 has only indices 0 and 1.
  SpatialTransformer: x_in; GN(eps 1e-6); proj_in Conv2d 1x1 (inner, C, 1, 1) weights; 'b c h w ->
    b (h w) c'; per block: x = attn1(norm1(x)) + x; x = attn2(norm2(x), context) + x; x =
    ff(norm3(x)) + x; back to b c h w; proj_out Conv2d 1x1; + x_in. CrossAttention: to_q / to_k /
    to_v Linear without bias (to_k / to_v from context_dim), heads split 'b n (h d)' (head-major),
    sim = q k^T * dim_head^-0.5, softmax in the working dtype (no float cast), to_out.0 Linear with
    bias (to_out.1 Dropout). attn1 is self-attention (context None -> x). FeedForward with glu
    (gated_ff=True): net.0 = GEGLU: proj Linear(dim, 2 * 4dim); x, gate = chunk(2) (value first);
    x * F.gelu(gate) (exact erf GELU, not tanh); net.1 Dropout; net.2 Linear(4dim, dim).
  ADM vs LDM UNetModel (diffing the two classes; ResBlock / AttentionBlock / QKV* / Up/Downsample
    are identical but for the LDM padding= parameter, default 1):
    - ADM first conv / out conv use input_ch = int(channel_mult[0] * mc) (allows mult 0.5); LDM
      uses mc; ADM takes int(mult * mc) everywhere.
    - LDM adds use_spatial_transformer / transformer_depth / context_dim / n_embed (id_predictor
      head: GN + 1x1 conv to n_embed, replaces out) / legacy, the heads rules above, and
      forward(x, timesteps, context=None, y=None); TimestepEmbedSequential passes context to
      SpatialTransformer layers.
    - LDM's convert_module_to_f16 is a no-op ("dummy replace"); ADM's converts conv weights to
      float16. In both, use_fp16 only sets self.dtype for the input cast h = x.type(self.dtype),
      and the output is cast back to x.dtype before self.out.
  ADM create_model: channel_mult "" -> 512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4), else ValueError; otherwise tuple(int(m) for m in
    channel_mult.split(",")). attention_resolutions "a,b" -> ds tuple(image_size // int(a), ...)
    (ds = downsampling factor: 1 at full size, x2 per level). out_channels 6 if learn_sigma else 3,
    in_channels 3, num_classes NUM_CLASSES (= 1000) if class_cond else None.
  LDM DDIM (ldm/models/diffusion/ddim.py, eta 0, "uniform"):
    - ddim_timesteps = range(0, T, T // S) + 1 (T = 1000, S = 10: 1, 101, ..., 901);
      alphas = alphas_cumprod[ddim_timesteps] (float32 tensor); alphas_prev = [alphas_cumprod[0]] +
      alphas_cumprod[ddim_timesteps[:-1]] (so the last step goes to alphas_cumprod[0] = 1 - betas[0]
      = 0.9985, not to 1); sigmas = eta * sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev));
      sqrt_one_minus_alphas = sqrt(1 - alphas) (float32).
    - loop over flip(ddim_timesteps) (901 first), index = S - 1 - i; the model sees t = ddim_timesteps
      [index] (the +1 value, int64); with guidance: x_in = cat([x, x]), c_in = cat([uncond, cond]),
      e_uncond, e_cond = apply_model(x_in, t_in, c_in).chunk(2) (uncond first), e = e_uncond +
      scale * (e_cond - e_uncond); without (scale == 1. or uncond None) one call on cond.
    - pred_x0 = (x - sqrt(1 - a_t) * e) / sqrt(a_t); dir_xt = sqrt(1 - a_prev - sigma^2) * e;
      x_prev = sqrt(a_prev) * pred_x0 + dir_xt + sigma * noise (a_t, a_prev, sigma broadcast as
      float32 (b,1,1,1)).
"""
import ast
import collections
import contextlib
import inspect
import io
import json
import os
import sys
from functools import partial

import numpy as np
import torch

from make_dit_fixtures import write_safetensors  # F32 / I64 writer, the stdlib dtype order
from make_dit_fixtures import read_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "unet")
VQ_STATE = os.path.join(HERE, "autoencoders", "vq_compvis.pt")
VQ_JSON = os.path.join(HERE, "autoencoders", "vq.json")
STD = 0.1
SEEDS = {
    "ldm_cin": {"weights": 1101, "inputs": 1102, "ddim_x_T": 1103},
    "ldm_attn": {"weights": 1201, "inputs": 1202},
    "adm_cond": {"weights": 1301, "inputs": 1302},
}
COMMITS = {
    "latent-diffusion": "a506df5756472e2ebaf9078affdde2c4f1502cd4 (2022-07-27)",
    "guided-diffusion": "22e0df8183507e13a7813f8d38d51b072ca1e67c (2022-07-15)",
}

LDM_CIN_KWARGS = dict(image_size=8, in_channels=3, out_channels=3, model_channels=32,
                      attention_resolutions=[1, 2], num_res_blocks=1, channel_mult=[1, 2], num_heads=1,
                      use_spatial_transformer=True, transformer_depth=1, context_dim=16)
CLASS_EMBEDDER_KWARGS = dict(embed_dim=16, n_classes=11, key="class_label")
NULL_CLASS = 10
SCHEDULE = dict(given_betas=None, beta_schedule="linear", timesteps=1000, linear_start=0.0015,
                linear_end=0.0195, cosine_s=8e-3)
DDIM = dict(S=10, batch_size=2, shape=(3, 8, 8), eta=0.0, log_every_t=1, unconditional_guidance_scale=3.0)
DDIM_LABELS = [4, 9]

LDM_ATTN_KWARGS = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32,
                       attention_resolutions=[1, 2], num_res_blocks=1, channel_mult=[1, 2], num_classes=10,
                       num_heads=2, num_heads_upsample=1, use_scale_shift_norm=False, resblock_updown=False,
                       conv_resample=False, use_new_attention_order=True)

ADM_FLAGS = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1,2", learn_sigma=True,
                 class_cond=True, attention_resolutions="8,4", num_heads=4, num_head_channels=16,
                 num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                 use_fp16=False, use_new_attention_order=False)

STUBS = {
    "einops/__init__.py": '''"""Stand-in for einops 0.3.0: the four rearrange patterns of ldm/modules/attention.py's
SpatialTransformer / CrossAttention (see make_unet_fixtures.py)."""


def _recipe(pattern):
    """(elementary input axes, input groups, output groups): 0.3.0's reshape-permute-reshape."""
    table = {
        "b c h w -> b (h w) c": (["b", "c", "h", "w"], [["b"], ["c"], ["h"], ["w"]], [["b"], ["h", "w"], ["c"]]),
        "b (h w) c -> b c h w": (["b", "h", "w", "c"], [["b"], ["h", "w"], ["c"]], [["b"], ["c"], ["h"], ["w"]]),
        "b n (h d) -> (b h) n d": (["b", "n", "h", "d"], [["b"], ["n"], ["h", "d"]], [["b", "h"], ["n"], ["d"]]),
        "(b h) n d -> b n (h d)": (["b", "h", "n", "d"], [["b", "h"], ["n"], ["d"]], [["b"], ["n"], ["h", "d"]]),
    }
    key = " ".join(pattern.split())
    if key not in table:
        raise NotImplementedError("einops stand-in: unsupported pattern %r" % pattern)
    return table[key]


def rearrange(tensor, pattern, **axes_lengths):
    elementary, in_groups, out_groups = _recipe(pattern)
    if tensor.dim() != len(in_groups):
        raise ValueError("einops stand-in: %r expects %d dims, got %d" % (pattern, len(in_groups), tensor.dim()))
    sizes = dict(axes_lengths)
    if any(a not in elementary for a in sizes):
        raise ValueError("einops stand-in: unknown axis in %r" % sorted(sizes))
    for group, n in zip(in_groups, tensor.shape):
        unknown = [a for a in group if a not in sizes]
        known = 1
        for a in group:
            if a in sizes:
                known *= sizes[a]
        if len(unknown) > 1:
            raise ValueError("einops stand-in: cannot infer %r" % unknown)
        if unknown:
            if n % known:
                raise ValueError("einops stand-in: %d not divisible by %d" % (n, known))
            sizes[unknown[0]] = n // known
        elif known != n:
            raise ValueError("einops stand-in: shape mismatch for %r" % group)
    tensor = tensor.reshape([sizes[a] for a in elementary])
    order = [a for group in out_groups for a in group]
    tensor = tensor.permute([elementary.index(a) for a in order])
    shape = []
    for group in out_groups:
        n = 1
        for a in group:
            n *= sizes[a]
        shape.append(n)
    return tensor.reshape(shape)


def repeat(tensor, pattern, **axes_lengths):
    raise NotImplementedError("einops stand-in: repeat is not used on the U-Net path (masks, repeat_only)")


def reduce(tensor, pattern, reduction, **axes_lengths):
    raise NotImplementedError("einops stand-in: reduce is not used (imported by ldm/modules/x_transformer.py)")
''',
    "omegaconf/__init__.py": '"""Stand-in for omegaconf: only listconfig.ListConfig (see make_unet_fixtures.py)."""\n',
    "omegaconf/listconfig.py": '''"""Stand-in for omegaconf.listconfig: openaimodel.UNetModel checks type(context_dim) == ListConfig."""


class ListConfig:
    """Nothing is an instance of this class."""
''',
    "tqdm/__init__.py": '''"""Stand-in for tqdm: the progress bar yields the iterable's items unchanged."""


def tqdm(iterable=None, *args, **kwargs):
    return iterable
''',
    "clip/__init__.py": '"""Stand-in for openai CLIP: imported by ldm/modules/encoders/modules.py, unused here."""\n',
    "kornia/__init__.py": '"""Stand-in for kornia: imported by ldm/modules/encoders/modules.py, unused here."""\n',
    "PIL/__init__.py": '"""Stand-in for Pillow: ldm/util.py imports Image, ImageDraw, ImageFont, unused here."""\n',
    "PIL/Image.py": "",
    "PIL/ImageDraw.py": "",
    "PIL/ImageFont.py": "",
}


def write_stubs(official):
    for rel, text in STUBS.items():
        path = os.path.join(official, "stubs-unet", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def check_einops_stub():
    """The four patterns against einops' definition, element by element ((x y) is x-major)."""
    from einops import rearrange
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=g)
    y = rearrange(x, "b c h w -> b (h w) c")
    assert y.shape == (2, 20, 3)
    for b in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    assert y[b, h * 5 + w, c] == x[b, c, h, w]
    assert torch.equal(rearrange(y, "b (h w) c -> b c h w", h=4, w=5), x)
    q = torch.randn(2, 7, 6, generator=g)
    r = rearrange(q, "b n (h d) -> (b h) n d", h=3)
    assert r.shape == (6, 7, 2)
    for b in range(2):
        for h in range(3):
            for n in range(7):
                for d in range(2):
                    assert r[b * 3 + h, n, d] == q[b, n, h * 2 + d]
    assert torch.equal(rearrange(r, "(b h) n d -> b n (h d)", h=3), q)
    for bad in ("b c h w -> b h w c", "b ... -> b (...)"):
        try:
            rearrange(x, bad)
        except NotImplementedError:
            continue
        raise AssertionError(bad)


def extract(path, class_name, func_name, namespace):
    """The function func_name of class class_name in path, compiled unchanged into namespace."""
    with open(path) as f:
        tree = ast.parse(f.read())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    assert len(cls) == 1, class_name
    funcs = [n for n in cls[0].body if isinstance(n, ast.FunctionDef) and n.name == func_name]
    assert len(funcs) == 1 and not funcs[0].decorator_list, (class_name, func_name)
    exec(compile(ast.Module(body=funcs, type_ignores=[]), path, "exec"), namespace)
    return namespace[func_name]


def randomise(modules, seed):
    """Refills every parameter of each module (in order, one generator) as the docstring says."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in modules:
            norm_weights = {id(m.weight) for m in model.modules()
                            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None}
            for name, prm in model.named_parameters():
                noise = torch.randn(prm.shape, generator=g)
                if id(prm) in norm_weights:
                    assert prm.dim() == 1 and name.endswith(".weight"), name
                    prm.copy_(1.0 + 0.1 * noise)
                else:
                    prm.copy_(STD * noise)


def build(cls, **kwargs):
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = cls(**kwargs)
    return model.eval()


def stats(name, t):
    t = t.float()
    print("  %-18s %-18s std %.4g  max|.| %.4g" % (name, tuple(t.shape), t.std().item(), t.abs().max().item()))


def write_json(name, info):
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def defaults_not_passed(cls, kwargs):
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name != "self" and p.name not in kwargs and p.default is not inspect.Parameter.empty:
            out[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def weights_note(case, extra=""):
    return ("official init with torch.manual_seed(0), then every parameter in named_parameters() order = "
            "%g * randn (1-D weights of GroupNorm / LayerNorm modules: 1 + 0.1 randn) from "
            "torch.Generator().manual_seed(%d)%s" % (STD, SEEDS[case]["weights"], extra))


def contiguous(tensors):
    return collections.OrderedDict((k, v.contiguous()) for k, v in tensors.items())


# ----------------------------------------------------------------------------------------- ldm_cin

class ScheduleHolder(torch.nn.Module):
    """Stand-in for DDPM's self: the attributes register_schedule reads (DDPM defaults)."""

    def __init__(self, register_schedule):
        super().__init__()
        self.v_posterior = 0.
        self.parameterization = "eps"
        register_schedule(self, **SCHEDULE)


class Wrapper(torch.nn.Module):
    """Stand-in for DiffusionWrapper: its official forward, extracted from ddpm.py."""

    def __init__(self, unet, forward):
        super().__init__()
        self.diffusion_model = unet
        self.conditioning_key = "crossattn"
        self._forward = forward

    def forward(self, *args, **kwargs):
        return self._forward(self, *args, **kwargs)


class LDMStandIn:
    """Stand-in for LatentDiffusion as DDIMSampler uses it; apply_model is the official one."""

    def __init__(self, wrapper, schedule, apply_model):
        self.model = wrapper
        self.num_timesteps = schedule.num_timesteps
        self.betas = schedule.betas
        self.alphas_cumprod = schedule.alphas_cumprod
        self.alphas_cumprod_prev = schedule.alphas_cumprod_prev
        self.device = torch.device("cpu")
        self.cond_stage_key = "class_label"
        self._apply_model = apply_model

    def apply_model(self, x_noisy, t, cond, return_ids=False):
        return self._apply_model(self, x_noisy, t, cond, return_ids)


def ldm_functions(official):
    ddpm = os.path.join(official, "latent-diffusion", "ldm", "models", "diffusion", "ddpm.py")
    from einops import rearrange
    from ldm.modules.diffusionmodules.util import make_beta_schedule
    from ldm.util import exists
    ns = {"np": np, "torch": torch, "partial": partial, "exists": exists,
          "make_beta_schedule": make_beta_schedule, "rearrange": rearrange}
    return (extract(ddpm, "DDPM", "register_schedule", ns),
            extract(ddpm, "DiffusionWrapper", "forward", ns),
            extract(ddpm, "LatentDiffusion", "apply_model", ns))


def make_sampler():
    from ldm.models.diffusion.ddim import DDIMSampler

    class CPUDDIMSampler(DDIMSampler):
        """The official DDIMSampler, keeping its buffers on the CPU."""

        def register_buffer(self, name, attr):
            setattr(self, name, attr)

    return CPUDDIMSampler


def run_ddim(unet, embedder, schedule, funcs, x_T):
    _, wrapper_forward, apply_model = funcs
    model = LDMStandIn(Wrapper(unet, wrapper_forward), schedule, apply_model)
    sampler = make_sampler()(model)
    labels = torch.tensor(DDIM_LABELS, dtype=torch.int64)
    null = torch.full((2,), NULL_CLASS, dtype=torch.int64)
    with torch.no_grad():
        c = embedder({"class_label": labels})
        uc = embedder({"class_label": null})
        # apply_model is the plain crossattn U-Net call
        t = torch.tensor([901, 1], dtype=torch.int64)
        assert torch.equal(model.apply_model(x_T, t, c), unet(x_T, t, context=c))
        kw = dict(S=DDIM["S"], batch_size=DDIM["batch_size"], shape=DDIM["shape"], eta=DDIM["eta"],
                  x_T=x_T, log_every_t=DDIM["log_every_t"], verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):
            samples, inter = sampler.sample(conditioning=c, unconditional_conditioning=uc,
                                            unconditional_guidance_scale=DDIM["unconditional_guidance_scale"],
                                            **kw)
            timesteps = torch.from_numpy(np.asarray(sampler.ddim_timesteps)).to(torch.int64)
            samples_noguide, _ = sampler.sample(conditioning=c, unconditional_guidance_scale=1.0, **kw)
    assert len(inter["x_inter"]) == len(inter["pred_x0"]) == DDIM["S"] + 1
    assert inter["x_inter"][0] is x_T and inter["pred_x0"][0] is x_T and inter["x_inter"][-1] is samples
    return collections.OrderedDict([
        ("x_T", x_T), ("labels", labels), ("null_label", torch.tensor([NULL_CLASS], dtype=torch.int64)),
        ("timesteps", timesteps), ("x_inter", torch.stack(inter["x_inter"])),
        ("pred_x0", torch.stack(inter["pred_x0"])), ("samples", samples), ("samples_noguide", samples_noguide),
    ])


def ldm_cin_io(unet, embedder, g):
    x = torch.randn(2, 3, 8, 8, generator=g)
    context4 = torch.randn(2, 4, LDM_CIN_KWARGS["context_dim"], generator=g)
    x_wide = torch.randn(1, 3, 8, 12, generator=g)
    t = torch.tensor([17, 981], dtype=torch.int64)
    y = torch.tensor([3, NULL_CLASS], dtype=torch.int64)
    t_wide = torch.tensor([500], dtype=torch.int64)
    y_wide = torch.tensor([7], dtype=torch.int64)
    return recompute_ldm_cin(unet, embedder, dict(x=x, t=t, y=y, context4=context4, x_wide=x_wide,
                                                  t_wide=t_wide, y_wide=y_wide))


def recompute_ldm_cin(unet, embedder, inp):
    with torch.no_grad():
        context = embedder({"class_label": inp["y"]})
        context_wide = embedder({"class_label": inp["y_wide"]})
        return contiguous(collections.OrderedDict([
            ("x", inp["x"]), ("t", inp["t"]), ("y", inp["y"]), ("context", context),
            ("out", unet(inp["x"], inp["t"], context=context)),
            ("context4", inp["context4"]), ("out_context4", unet(inp["x"], inp["t"], context=inp["context4"])),
            ("x_wide", inp["x_wide"]), ("t_wide", inp["t_wide"]), ("y_wide", inp["y_wide"]),
            ("context_wide", context_wide), ("out_wide", unet(inp["x_wide"], inp["t_wide"], context=context_wide)),
        ]))


def ldm_cin_case(official):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from ldm.modules.encoders.modules import ClassEmbedder
    funcs = ldm_functions(official)
    schedule = ScheduleHolder(funcs[0])
    unet = build(UNetModel, **LDM_CIN_KWARGS)
    embedder = build(ClassEmbedder, **CLASS_EMBEDDER_KWARGS)
    randomise([unet, embedder], SEEDS["ldm_cin"]["weights"])
    g = torch.Generator().manual_seed(SEEDS["ldm_cin"]["inputs"])
    tensors = ldm_cin_io(unet, embedder, g)
    x_T = torch.randn(2, *DDIM["shape"], generator=torch.Generator().manual_seed(SEEDS["ldm_cin"]["ddim_x_T"]))
    ddim = contiguous(run_ddim(unet, embedder, schedule, funcs, x_T))
    print("ldm_cin:")
    for k in ("context", "out", "out_context4", "out_wide"):
        stats(k, tensors[k])
    for k in ("x_inter", "pred_x0", "samples", "samples_noguide"):
        stats(k, ddim[k])
    print("  ddim timesteps %s" % ddim["timesteps"].tolist())
    spatial = collections.OrderedDict()
    for n, m in unet.named_modules():
        if type(m).__name__ == "SpatialTransformer":
            attn = m.transformer_blocks[0].attn1
            spatial[n] = {"n_heads": attn.heads, "d_head": attn.to_q.out_features // attn.heads}
    print("  spatial transformers %s" % dict(spatial))

    ckpt = collections.OrderedDict()
    buffers = schedule.state_dict()
    assert "lvlb_weights" not in buffers and len(buffers) == 12
    for k, v in buffers.items():
        ckpt[k] = v
    for k, v in unet.state_dict().items():
        ckpt["model.diffusion_model." + k] = v
    for k, v in torch.load(VQ_STATE).items():
        ckpt["first_stage_model." + k] = v
    for k, v in embedder.state_dict().items():
        ckpt["cond_stage_model." + k] = v
    torch.save({"state_dict": ckpt, "global_step": 0}, os.path.join(OUT, "ldm_cin.ckpt"))
    write_safetensors(os.path.join(OUT, "ldm_cin_io.safetensors"), tensors)
    write_safetensors(os.path.join(OUT, "ldm_cin_ddim.safetensors"), ddim)

    with open(VQ_JSON) as f:
        vq = json.load(f)
    write_json("ldm_cin", {
        "official": COMMITS, "seeds": SEEDS["ldm_cin"],
        "unet_target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
        "unet_kwargs": LDM_CIN_KWARGS,
        "unet_defaults_not_passed": defaults_not_passed(UNetModel, LDM_CIN_KWARGS),
        "spatial_transformers": spatial,
        "cond_stage": {"target": "ldm.modules.encoders.modules.ClassEmbedder", "params": CLASS_EMBEDDER_KWARGS,
                       "null_class": NULL_CLASS,
                       "forward": "c = batch[key][:, None]; c = embedding(c): (N, 1, embed_dim)"},
        "first_stage": {"target": "ldm.models.autoencoder.VQModelInterface", "ddconfig": vq["ddconfig"],
                        "n_embed": vq["n_embed"], "embed_dim": vq["embed_dim"],
                        "tensors_from": "autoencoders/vq_compvis.pt"},
        "conditioning_key": "crossattn", "cond_stage_key": "class_label",
        "schedule": {k: v for k, v in SCHEDULE.items() if k != "given_betas"},
        "schedule_buffers": list(buffers),
        "schedule_buffers_computed_by": "official DDPM.register_schedule (ddpm.py, extracted with ast) on a "
                                        "stand-in module with v_posterior 0. and parameterization eps",
        "scale_factor": 1.0,
        "scale_factor_note": "cin256-v2 sets neither scale_factor nor scale_by_std: LatentDiffusion keeps the "
                             "default 1.0 as a plain attribute, so no scale_factor key in the state dict",
        "ckpt_prefixes": ["model.diffusion_model.", "first_stage_model.", "cond_stage_model."],
        "ddim": dict(DDIM, shape=list(DDIM["shape"]), labels=DDIM_LABELS, null_label=NULL_CLASS,
                     ddim_discretize="uniform", sampler="ldm.models.diffusion.ddim.DDIMSampler (register_buffer "
                     "kept on the CPU)", timesteps=ddim["timesteps"].tolist(),
                     intermediates="x_inter / pred_x0 index 0 = x_T (both), index i = after the step at "
                                   "t = timesteps[S - i]; x_inter[S] = samples",
                     samples_noguide="same x_T and conditioning, unconditional_guidance_scale 1.0, "
                                     "no unconditional_conditioning"),
        "io": {"t": [17, 981], "y": [3, NULL_CLASS], "t_wide": [500], "y_wide": [7],
               "context4": "randn (2,4,16): a multi-token context so that attn2's to_q / to_k matter"},
        "weights_init": weights_note("ldm_cin", "; the ClassEmbedder's embedding.weight continues the same "
                                                "generator after the UNet"),
    })
    return tensors, ddim, funcs


# ---------------------------------------------------------------------------------------- ldm_attn

def label_io(unet, inp):
    with torch.no_grad():
        return contiguous(collections.OrderedDict([
            ("x", inp["x"]), ("t", inp["t"]), ("y", inp["y"]), ("out", unet(inp["x"], inp["t"], y=inp["y"])),
            ("x_wide", inp["x_wide"]), ("t_wide", inp["t_wide"]), ("y_wide", inp["y_wide"]),
            ("out_wide", unet(inp["x_wide"], inp["t_wide"], y=inp["y_wide"])),
        ]))


def ldm_attn_case():
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    unet = build(UNetModel, **LDM_ATTN_KWARGS)
    randomise([unet], SEEDS["ldm_attn"]["weights"])
    g = torch.Generator().manual_seed(SEEDS["ldm_attn"]["inputs"])
    inp = dict(x=torch.randn(2, 4, 8, 8, generator=g), t=torch.tensor([0, 999]), y=torch.tensor([1, 8]),
               x_wide=torch.randn(1, 4, 12, 8, generator=g), t_wide=torch.tensor([250]), y_wide=torch.tensor([5]))
    tensors = label_io(unet, inp)
    heads = [(n, m.attention.n_heads, type(m.attention).__name__) for n, m in unet.named_modules()
             if type(m).__name__ == "AttentionBlock"]
    print("ldm_attn:")
    for k in ("out", "out_wide"):
        stats(k, tensors[k])
    print("  attention heads %s" % heads)
    torch.save(unet.state_dict(), os.path.join(OUT, "ldm_attn.pt"))
    write_safetensors(os.path.join(OUT, "ldm_attn_io.safetensors"), tensors)
    write_json("ldm_attn", {
        "official": COMMITS, "seeds": SEEDS["ldm_attn"],
        "unet_target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
        "unet_kwargs": LDM_ATTN_KWARGS,
        "unet_defaults_not_passed": defaults_not_passed(UNetModel, LDM_ATTN_KWARGS),
        "attention_heads": {n: h for n, h, _ in heads},
        "attention_kind": sorted({k for _, _, k in heads}),
        "io": {"t": [0, 999], "y": [1, 8], "t_wide": [250], "y_wide": [5]},
        "weights_init": weights_note("ldm_attn"),
    })
    return tensors, heads


# ---------------------------------------------------------------------------------------- adm_cond

def adm_unet_kwargs(NUM_CLASSES):
    """What guided_diffusion.script_util.create_model passes to UNetModel for ADM_FLAGS."""
    f = ADM_FLAGS
    return dict(
        image_size=f["image_size"], in_channels=3, model_channels=f["num_channels"],
        out_channels=6 if f["learn_sigma"] else 3, num_res_blocks=f["num_res_blocks"],
        attention_resolutions=tuple(f["image_size"] // int(r) for r in f["attention_resolutions"].split(",")),
        dropout=f["dropout"], channel_mult=tuple(int(m) for m in f["channel_mult"].split(",")),
        num_classes=NUM_CLASSES if f["class_cond"] else None, use_checkpoint=False, use_fp16=f["use_fp16"],
        num_heads=f["num_heads"], num_head_channels=f["num_head_channels"],
        num_heads_upsample=f["num_heads_upsample"], use_scale_shift_norm=f["use_scale_shift_norm"],
        resblock_updown=f["resblock_updown"], use_new_attention_order=f["use_new_attention_order"])


def adm_cond_case():
    from guided_diffusion import script_util
    from guided_diffusion.unet import UNetModel
    assert script_util.NUM_CLASSES == 1000
    unet = build(script_util.create_model, **ADM_FLAGS)
    kwargs = adm_unet_kwargs(script_util.NUM_CLASSES)
    direct = build(UNetModel, **kwargs)
    a, b = unet.state_dict(), direct.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a), "create_model kwargs mismatch"
    for name in ("attention_resolutions", "channel_mult", "out_channels", "num_classes"):
        assert getattr(unet, name) == kwargs[name], name
    randomise([unet], SEEDS["adm_cond"]["weights"])
    g = torch.Generator().manual_seed(SEEDS["adm_cond"]["inputs"])
    inp = dict(x=torch.randn(2, 3, 16, 16, generator=g), t=torch.tensor([5, 900]), y=torch.tensor([0, 999]),
               x_wide=torch.randn(1, 3, 16, 24, generator=g), t_wide=torch.tensor([400]), y_wide=torch.tensor([123]))
    tensors = label_io(unet, inp)
    heads = [(n, m.attention.n_heads, type(m.attention).__name__) for n, m in unet.named_modules()
             if type(m).__name__ == "AttentionBlock"]
    print("adm_cond:")
    for k in ("out", "out_wide"):
        stats(k, tensors[k])
    print("  attention heads %s" % heads)
    torch.save(unet.state_dict(), os.path.join(OUT, "adm_cond.pt"))
    write_safetensors(os.path.join(OUT, "adm_cond_io.safetensors"), tensors)
    json_kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    write_json("adm_cond", {
        "official": COMMITS, "seeds": SEEDS["adm_cond"],
        "create_model": "guided_diffusion.script_util.create_model", "create_model_flags": ADM_FLAGS,
        "num_classes_constant": script_util.NUM_CLASSES,
        "unet_target": "guided_diffusion.unet.UNetModel", "unet_kwargs": json_kwargs,
        "unet_defaults_not_passed": defaults_not_passed(UNetModel, kwargs),
        "attention_heads": {n: h for n, h, _ in heads},
        "attention_kind": sorted({k for _, _, k in heads}),
        "io": {"t": [5, 900], "y": [0, 999], "t_wide": [400], "y_wide": [123]},
        "output": "6 channels: eps (0:3) then the learned-variance values (3:6)",
        "weights_init": weights_note("adm_cond"),
    })
    return tensors, heads


# ------------------------------------------------------------------------------------------ checks

def check_outputs(cin, ddim, attn, adm, funcs):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel as LdmUNet
    from ldm.modules.encoders.modules import ClassEmbedder
    from guided_diffusion import script_util

    for name, ref in (("ldm_cin_io", cin), ("ldm_cin_ddim", ddim), ("ldm_attn_io", attn), ("adm_cond_io", adm)):
        back = read_safetensors(os.path.join(OUT, name + ".safetensors"))
        assert list(sorted(back)) == list(sorted(ref)), name
        for k, v in ref.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), (name, k)
            if k.startswith("out") or k.startswith("samples") or k in ("x_inter", "pred_x0"):
                assert not torch.isnan(v).any() and v.std().item() > 0.01, (name, k, v.std().item())

    # ldm_cin: everything from ldm_cin.ckpt into fresh official modules
    ckpt = torch.load(os.path.join(OUT, "ldm_cin.ckpt"))
    assert ckpt["global_step"] == 0
    state = ckpt["state_dict"]
    split = collections.defaultdict(collections.OrderedDict)
    for k, v in state.items():
        for prefix in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model."):
            if k.startswith(prefix):
                split[prefix][k[len(prefix):]] = v
                break
        else:
            split[""][k] = v
    vq = torch.load(VQ_STATE)
    assert list(split["first_stage_model."]) == list(vq)
    assert all(torch.equal(split["first_stage_model."][k], vq[k]) for k in vq)
    unet = build(LdmUNet, **LDM_CIN_KWARGS)
    unet.load_state_dict(split["model.diffusion_model."], strict=True)
    embedder = build(ClassEmbedder, **CLASS_EMBEDDER_KWARGS)
    embedder.load_state_dict(split["cond_stage_model."], strict=True)
    schedule = ScheduleHolder(funcs[0])
    assert list(split[""]) == list(schedule.state_dict())
    for k in split[""]:
        assert torch.equal(split[""][k], getattr(schedule, k)), k
        setattr(schedule, k, split[""][k])  # the sampler reads the stored buffers
    again = recompute_ldm_cin(unet, embedder, cin)
    for k, v in cin.items():
        assert (again[k] - v).abs().max().item() == 0, ("ldm_cin", k)
    again = run_ddim(unet, embedder, schedule, funcs, ddim["x_T"])
    for k, v in ddim.items():
        assert (again[k] - v).abs().max().item() == 0, ("ldm_cin_ddim", k)

    unet = build(LdmUNet, **LDM_ATTN_KWARGS)
    unet.load_state_dict(torch.load(os.path.join(OUT, "ldm_attn.pt")), strict=True)
    again = label_io(unet, attn)
    for k, v in attn.items():
        assert (again[k] - v).abs().max().item() == 0, ("ldm_attn", k)

    unet = build(script_util.create_model, **ADM_FLAGS)
    unet.load_state_dict(torch.load(os.path.join(OUT, "adm_cond.pt")), strict=True)
    again = label_io(unet, adm)
    for k, v in adm.items():
        assert (again[k] - v).abs().max().item() == 0, ("adm_cond", k)
    print("reload checks: all outputs reproduced exactly")
    for name in sorted(os.listdir(OUT)):
        print("  %-26s %8d bytes" % (name, os.path.getsize(os.path.join(OUT, name))))


def main():
    official = os.path.abspath(sys.argv[1])
    write_stubs(official)
    sys.path[:0] = [os.path.join(official, "stubs-unet"), os.path.join(official, "latent-diffusion"),
                    os.path.join(official, "guided-diffusion")]
    check_einops_stub()
    os.makedirs(OUT, exist_ok=True)
    cin, ddim, funcs = ldm_cin_case(official)
    attn, _ = ldm_attn_case()
    adm, _ = adm_cond_case()
    check_outputs(cin, ddim, attn, adm, funcs)
    print("unet fixtures written")


if __name__ == "__main__":
    main()
