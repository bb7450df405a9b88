#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes dcae/*_original.safetensors and dcae/*_diffusers.safetensors (tiny random-weight DC-AE
models in the original mit-han-lab key layout and in diffusers' AutoencoderDC layout),
dcae/*_io.safetensors (inputs and the outputs of the *official* encode / decode) and dcae/*.json
(the official configuration each case was built with) for the DC-AE reference tests.

    /usr/bin/python3 make_dcae_fixtures.py OFFICIAL_DIR

Runs under Debian 12's /usr/bin/python3 (Python 3.11.2, so the `A | B` annotations of efficientvit
evaluate as written: no `from __future__ import annotations` workaround is needed) and python3-torch
1.13, on the CPU, in about 2 s; two runs give byte-identical files.

OFFICIAL_DIR layout (none of it is committed: only its outputs are):

    OFFICIAL_DIR/efficientvit/  checkout of github.com/mit-han-lab/efficientvit (commit de7d773,
                                de7d7733cc0329f391b33f1f459271562ec27bd5, 2025-09-05), used unmodified:
                                efficientvit/models/efficientvit/dc_ae.py (DCAE, DCAEConfig,
                                EncoderConfig, DecoderConfig) and the nn/act.py, nn/norm.py, nn/ops.py
                                and utils/ modules it imports. The official Triton kernel
                                nn/triton_rms_norm.py is only run by the stand-in check below.
    OFFICIAL_DIR/diffusers/     optional, checkout of github.com/huggingface/diffusers (commit 58eb52c,
                                58eb52c0803ea9af3abec60841c2a093bdf1f951), read with ast (diffusers
                                cannot be imported): the renaming is checked against its two converters
                                and its AutoencoderDC (see "diffusers names"). Without it the outputs
                                are the same except that the *.json have no diffusers_config.
    OFFICIAL_DIR/stubs-dcae/    written by this script (STUBS below), see "Stand-ins".

No monkeypatch: the official DCAE runs unchanged, float32, in eval mode under torch.no_grad().

Cases (CASES): the configuration is the official cfg_str of dc_ae_f32c32(name) in dc_ae.py, read with
ast and parsed as OmegaConf.from_dotlist would (ints, floats, strings, flat lists), with exactly five
entries changed: latent_channels=4, encoder/decoder.width_list (CASES: sana 8,16,32,32,32,64, whose
last stage has two heads of the head dim 32; in 8,16,32,32,32,32, one head) and encoder/decoder.depth_list
as below (small, to keep the files small). Nothing else
is changed; the DCAEConfig / EncoderConfig / DecoderConfig dataclasses are built directly from it.
    sana  template dc-ae-f32c32-sana-1.0: encoder depths 1,1,1,2,1,1, decoder 1,2,1,1,1,1. Res x3 then
          EViTS5_GLU x3 (LiteMLA scales (5,)), encoder rms/silu, down = 3x3 stride-2 conv ("Conv"),
          encoder in = 3x3 conv 3->8, up = nearest x2 + 3x3 conv ("InterpolateConv"), decoder rms/silu
          everywhere, decoder out = rms(8), relu, 3x3 conv 8->3. scaling_factor 0.41407 (template).
          446,103 parameters, 156 state_dict tensors (170 in the diffusers layout).
    in    template dc-ae-f32c32-in-1.0: encoder depths 0,1,1,2,1,1, decoder 0,2,1,1,1,1 (stage 0 empty
          on both sides, width 8 unused). Res x3 then EViT_GLU x3 (scales ()), down = 3x3 conv to
          Cout/4 + pixel_unshuffle(2) ("ConvPixelUnshuffle", the EncoderConfig default, not set by the
          template), encoder in = ConvPixelUnshuffle 3->4->16, up = 3x3 conv to 4*Cout + pixel_shuffle(2)
          ("ConvPixelShuffle", default), decoder stages 0-2 bn2d/relu and 3-5 trms2d/silu, decoder out
          = rms(16), relu, ConvPixelShuffle 16->12->3. scaling_factor None: dc_ae.py gives in-1.0 none
          (diffusers' converter uses 0.3189; recorded as diffusers_scaling_factor_of_template).
          328,112 parameters, 137 tensors, 5 of them BatchNorm num_batches_tracked (int64, value 0)
          (151 in the diffusers layout).
    Both: encoder out = conv 3x3 C->4 + channel-averaging shortcut (groups of C/4), decoder in = conv 3x3
    4->C + channel-duplicating shortcut (C the last width); down / up blocks with the averaging / duplicating shortcuts.

Weights: the official model is built with torch.manual_seed(0), then every parameter, in
named_parameters() order, is refilled from torch.Generator().manual_seed(SEED): STD * randn, except
the weights of norm modules (TritonRMSNorm2d, BatchNorm2d: 1-D .weight) = 1 + 0.1 randn and the
weights of every Conv2d outside EfficientViTBlock (project_in / project_out, the down / up block convs
and the ResBlock conv1 / conv2: listed in the json as unnormed_conv_weights) = UNNORMED_GAIN /
sqrt(fan_in) * randn. Then, from the same generator, every BatchNorm2d in named_modules() order gets
running_mean = 0.1 randn and running_var = 1 + 0.5 rand. The conv rescaling keeps the activations O(1):
with 0.1 randn everywhere the 3x3 convs have gain 0.3 sqrt(C_in) (2.4 at 64 channels), the residual
stream doubled at each stage and reached std 1e3 before the decoder's last norm (z std 30-40); now
every stage output has std 0.4-7.5, z std 1.2-1.7, y std 0.5-0.8.

Outputs in dcae/ (CASE = sana or in):
    CASE_original.safetensors  DCAE.state_dict() under the original keys (F32; num_batches_tracked I64),
                               i.e. the model.safetensors / {"state_dict": ...} layout of mit-han-lab.
    CASE_diffusers.safetensors the same tensors under diffusers AutoencoderDC names (see below).
    CASE_io.safetensors        for each HxW in SIZES = 64x96, 128x128, 256x192 (H rows, W columns),
                               BATCH = 1, from torch.Generator().manual_seed(1) in this order per size:
        x_HxW   (1,3,H,W)          uniform in [-1, 1): rand * 2 - 1
        zr_HxW  (1,4,H/32,W/32)    randn (drawn at every size; written for 64x96 only)
        z_HxW   (1,4,H/32,W/32)    model.encode(x) (the encoder output; no scaling factor)
        y_HxW   (1,3,H,W)          model.decode(z)
        yr_HxW  (1,3,H,W)          model.decode(zr), 64x96 only
      (x_* and zr_* are the same in both files.)
    f32c32.json  the parameter and state-dict tensor counts of the full official dc-ae-f32c32-sana-1.0
                 (312,250,275 / 339) and -in-1.0 (323,356,460 / 338) networks, built from their own cfg_str.
    CASE.json   official (commits), template, template_cfg_str, changed, config (every field of
                DCAEConfig with its EncoderConfig / DecoderConfig, dataclasses.asdict), parameters,
                tensors, diffusers_tensors, diffusers_config (the converter's get_ae_config(template)
                with the same five changes: the config.json diffusers would write),
                diffusers_scaling_factor_of_template, diffusers_check, sizes, batch, litemla_branch,
                weights_init, unnormed_conv_weights, inputs.
    Not written: CASE_original.pt ({"state_dict": ...} as dc_ae.py's load_model reads it) would be a
    2.5 MB copy of CASE_original.safetensors.

LiteMLA branch: ops.py LiteMLA.forward takes relu_linear_att when H*W > self.dim (the head dim, 32) and
relu_quadratic_att otherwise, separately for every EViT block (at 1/8, 1/16 and 1/32). The branch that
actually ran is recorded with sys.setprofile (the code object of each function; nothing is replaced),
checked against the condition computed from each LiteMLA input in a forward pre-hook, and stored in
CASE.json litemla_branch (module -> branch and token count, per size, encode and decode); both
branches must have run. Same for both cases:
    64x96    1/8: 8x12 = 96 linear;   1/16: 4x6 = 24 quadratic;  1/32: 2x3 = 6 quadratic
    128x128  1/8: 256 linear;         1/16: 8x8 = 64 linear;     1/32: 4x4 = 16 quadratic
    256x192  1/8: 768 linear;         1/16: 192 linear;          1/32: 8x6 = 48 linear

diffusers names (to_diffusers / diffusers_name, derived from the two module structures):
    encoder.project_in.conv.*            -> encoder.conv_in.*      (in: project_in.conv.conv.* -> conv_in.conv.*)
    encoder.project_out.main.op_list.0.conv.* -> encoder.conv_out.*
    decoder.project_in.main.conv.*       -> decoder.conv_in.*
    decoder.project_out.op_list.0.*      -> decoder.norm_out.*
    decoder.project_out.op_list.2.conv.* -> decoder.conv_out.*     (in: ...op_list.2.conv.conv.* -> conv_out.conv.*)
    {en,de}coder.stages.S.op_list.J.X    -> encoder.down_blocks.S.J.X' / decoder.up_blocks.S.J.X' with X ->
        main.conv.* | main.conv.conv.* (down / up block)  -> conv.*
        main.conv1.conv.*, main.conv2.conv.weight, main.conv2.norm.*  -> conv1.*, conv2.weight, norm.*
        context_module.main.qkv.conv.weight (3T,C,1,1)    -> attn.to_q/to_k/to_v.weight (T,C): chunk(3, dim 0)
                                                             then [:, :, 0, 0] (rows 0..T-1, T..2T-1, 2T..3T-1)
        context_module.main.aggreg.I.0.weight / .I.1.weight -> attn.to_qkv_multiscale.I.proj_in / proj_out.weight
        context_module.main.proj.conv.weight (C,T(1+S),1,1) -> attn.to_out.weight (C,T(1+S))
        context_module.main.proj.norm.*                   -> attn.norm_out.*
        local_module.main.{inverted_conv,depth_conv}.conv.* -> conv_out.{conv_inverted,conv_depth}.* (4-D kept)
        local_module.main.point_conv.conv.weight, .point_conv.norm.* -> conv_out.conv_point.weight, conv_out.norm.*
    BatchNorm running_mean / running_var / num_batches_tracked are renamed like the other norm tensors
    (diffusers keeps them: its ResBlock norm is an nn.BatchNorm2d). With OFFICIAL_DIR/diffusers present
    this must equal, key for key and bit for bit: (1) convert_ae() of scripts/convert_dcae_to_diffusers.py
    (its module-level assignments and functions run unchanged, one fresh namespace per case since
    get_ae_config mutates AE_KEYS_RENAME_DICT), (2) convert_autoencoder_dc_checkpoint_to_diffusers() of
    src/diffusers/loaders/single_file_utils.py; and (3) diffusers' AutoencoderDC built from
    autoencoder_dc.py with diffusers_config must have exactly these state_dict keys, shapes and dtypes,
    load them with strict=True and reproduce z, y and yr from x, z and zr (its own RMSNorm / attention
    code: max error 1.7e-6 of max|ref|, the assertion is 1e-5).

Stand-ins (each checked against the real source it replaces):
  1. efficientvit.models.nn and efficientvit.models.efficientvit: empty module objects registered in
     sys.modules with __path__ = the real folders, so their __init__.py are not run (nn/__init__.py
     imports drop.py -> apps.trainer and triton_rms_norm.py -> triton; efficientvit/__init__.py imports
     backbone, cls, sam, seg -> onnx, segment_anything, PIL, ...). act.py, norm.py, ops.py and dc_ae.py are
     then imported by the normal import system from the real files, unmodified. efficientvit,
     efficientvit.models and efficientvit.models.utils are the real packages (their __init__.py import
     only list.py, network.py and random.py: torch and numpy).
  2. efficientvit.models.nn.triton_rms_norm = stubs-dcae/triton_rms_norm.py: TritonRMSNorm2dFunc (used
     by TritonRMSNorm2d, the "trms2d" norm) whose forward is the official _rms_norm_2d_fwd_fused kernel
     (triton_rms_norm.py:8-50) in torch ops, in the kernel's order: per sample and pixel, over channels
     0..C-1 in sequence, fp32 x_sum_square += x*x, mean_square = x_sum_square / C, rrms = 1 / sqrt(
     mean_square + eps), y = (x * rrms) * w[c] + b[c] in x's dtype; eps = the LayerNorm's 1e-5. The
     official TritonRMSNorm2dFunc.forward cannot run here (CUDA only: it allocates rrms on "cuda").
     Checked at every run: the official kernel function, loaded unmodified from triton_rms_norm.py with
     the interpreter of 4 below, gives bit-identical output on (2,8,5,60) (N = 300: two blocks of 256,
     masked tail), (1,64,2,3) and (2,32,17,19), and both are within 1e-5 of the float64 formula
     x * rsqrt(mean_c x^2 + eps) * w + b. backward raises (not used).
  3. omegaconf = stubs-dcae/omegaconf/__init__.py: MISSING = "???" (omegaconf's value; dc_ae.py uses it
     only as the in_channels / latent_channels dataclass default) and an OmegaConf placeholder that
     raises if used: dc_ae_f32c32's OmegaConf.from_dotlist / merge / to_object are replaced by reading its
     cfg_str (see Cases) and building the dataclasses directly; the "${..in_channels}" /
     "${..latent_channels}" interpolations of DCAEConfig's default_factory are resolved by passing the
     top-level values (3 and 4). Lists stay lists (block_type, norm, act must be lists for the official
     per-stage isinstance(..., list) checks).
  4. stubs-dcae/triton-interpreter/triton: a minimal Triton (jit, cdiv, next_power_of_2; language:
     program_id, arange, zeros, load/store with mask/other, sqrt, float32, constexpr, pointer arithmetic
     on flat CPU tensors), on sys.path only while triton_rms_norm.py is loaded for the check of 2; the
     model never uses it.
  5. diffusers checks only (no fixture depends on them): convert_ae() runs with hf_hub_download /
     load_file / AutoencoderDC replaced by stand-ins that hand over our state dict and record what
     load_state_dict(strict=True) receives; AutoencoderDC is rebuilt from its source with nn.Module
     instead of ModelMixin / AutoencoderMixin / ConfigMixin / FromOriginalModelMixin, only __init__,
     _encode and _decode, and @register_to_config dropped (config bookkeeping); the blocks it uses
     (ACT2CLS, get_activation, RMSNorm, get_normalization, SanaMultiscaleAttentionProjection,
     SanaMultiscaleLinearAttention, SanaMultiscaleAttnProcessor2_0, GLUMBConv, ResBlock,
     EfficientViTBlock, get_block, DCDownBlock2d, DCUpBlock2d, Encoder, Decoder) are their own code, with
     is_torch_npu_available = False and one module object registered as
     diffusers_extracted.models.normalization for `from .normalization import get_normalization`.
"""
import ast
import collections
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import struct
import sys
import time
import types
from typing import Any, Dict

import torch

from make_dit_fixtures import read_safetensors, write_safetensors  # F32 / I64, the stdlib dtype order

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dcae")
SEED = 1729
STD = 0.1
SIZES = ((64, 96), (128, 128), (256, 192))  # (H rows, W columns)
BATCH = 1
COMMITS = {
    "efficientvit": "mit-han-lab/efficientvit de7d7733cc0329f391b33f1f459271562ec27bd5 (2025-09-05)",
    "diffusers": "huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951",
}
CASES = collections.OrderedDict([
    ("sana", dict(template="dc-ae-f32c32-sana-1.0", latent_channels=4, widths=[8, 16, 32, 32, 32, 64],
                  encoder_depths=[1, 1, 1, 2, 1, 1], decoder_depths=[1, 2, 1, 1, 1, 1])),
    ("in", dict(template="dc-ae-f32c32-in-1.0", latent_channels=4, widths=[8, 16, 32, 32, 32, 32],
                encoder_depths=[0, 1, 1, 2, 1, 1], decoder_depths=[0, 2, 1, 1, 1, 1])),
])
UNNORMED_GAIN = 0.7  # weight std = UNNORMED_GAIN / sqrt(fan_in) for the Conv2d outside EfficientViTBlock

STUBS = {
    "omegaconf/__init__.py": '''"""Stand-in for omegaconf (see make_dcae_fixtures.py): dc_ae.py imports MISSING and OmegaConf at
module level; only MISSING is used (as a dataclass default), the configurations are built directly."""
MISSING = "???"  # omegaconf's own value


class OmegaConf:
    def __getattr__(self, name):
        raise NotImplementedError("omegaconf stand-in: build the DCAEConfig dataclasses directly")
''',
    "triton_rms_norm.py": '''"""Stand-in for efficientvit/models/nn/triton_rms_norm.py (see make_dcae_fixtures.py): the official
TritonRMSNorm2dFunc launches a Triton kernel on CUDA tensors only (rrms is allocated on "cuda").
This is the forward kernel _rms_norm_2d_fwd_fused written with torch ops, in the kernel's order:
per (sample m, pixel n), over the channels c = 0..C-1 in sequence, in fp32:
    x_sum_square += x*x; mean_square = x_sum_square / C; rrms = 1 / sqrt(mean_square + eps)
    y = (x * rrms) * w[c] + b[c], stored in x's dtype."""
import torch

__all__ = ["TritonRMSNorm2dFunc"]


class TritonRMSNorm2dFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x_arg = x.reshape(x.shape[0], x.shape[1], -1)
        M, C, N = x_arg.shape
        x_sum_square = torch.zeros((M, N), dtype=torch.float32, device=x.device)
        for off in range(0, C):
            xc = x_arg[:, off].to(torch.float32)
            x_sum_square = x_sum_square + xc * xc
        mean_square = x_sum_square / C
        rrms = 1 / torch.sqrt(mean_square + eps)
        x_hat = x_arg.to(torch.float32) * rrms[:, None, :]
        y = x_hat * weight[None, :, None] + bias[None, :, None]
        return y.to(x.dtype).reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        raise NotImplementedError("forward only")
''',
    "triton-interpreter/triton/__init__.py": '''"""Minimal Triton stand-in used only to *check* the TritonRMSNorm2dFunc stand-in (see
make_dcae_fixtures.py): @triton.jit kernels run as plain Python on CPU tensors, one program id at a
time; tensor arguments become pointers to their flat storage."""
import torch

from . import language


class _Kernel:
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        def launch(*args, num_warps=None, num_ctas=None, **kwargs):
            args = [language.pointer(a.view(-1)) if torch.is_tensor(a) else a for a in args]
            for pid in range(grid[0]):
                language._PID[0] = pid
                self.fn(*args, **kwargs)
        return launch


def jit(fn):
    return _Kernel(fn)


def cdiv(a, b):
    return (a + b - 1) // b


def next_power_of_2(n):
    return 1 << (n - 1).bit_length()
''',
    "triton-interpreter/triton/language.py": '''"""triton.language subset for the kernel interpreter (see triton/__init__.py)."""
import torch

float32 = torch.float32
_PID = [0]


class constexpr:
    pass


class pointer:
    def __init__(self, base, offset=0):
        self.base, self.offset = base, offset

    def __add__(self, k):
        return pointer(self.base, self.offset + k)

    __radd__ = __add__


def program_id(axis):
    assert axis == 0
    return _PID[0]


def arange(start, end):
    return torch.arange(start, end)


def zeros(shape, dtype):
    return torch.zeros(shape, dtype=dtype)


def sqrt(x):
    return torch.sqrt(x)


def load(ptr, mask=None, other=None):
    if not torch.is_tensor(ptr.offset):
        return ptr.base[ptr.offset]
    safe = torch.where(mask, ptr.offset, torch.zeros_like(ptr.offset))
    value = ptr.base[safe]
    return torch.where(mask, value, torch.full_like(value, other))


def store(ptr, value, mask=None):
    value = torch.as_tensor(value).to(ptr.base.dtype).expand(ptr.offset.shape)
    ptr.base[ptr.offset[mask]] = value[mask]
''',
}


def write_stubs(official):
    root = os.path.join(official, "stubs-dcae")
    for rel, text in STUBS.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return root


def load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_official(official, stubs):
    """Imports efficientvit/models/efficientvit/dc_ae.py unmodified (see Stand-ins)."""
    root = os.path.join(official, "efficientvit")
    models = os.path.join(root, "efficientvit", "models")
    sys.path[:0] = [stubs, root]
    for name, sub in (("efficientvit.models.nn", "nn"), ("efficientvit.models.efficientvit", "efficientvit")):
        package = types.ModuleType(name)  # an empty package: its __init__.py is not run
        package.__path__ = [os.path.join(models, sub)]
        sys.modules[name] = package
    load_by_path("efficientvit.models.nn.triton_rms_norm", os.path.join(stubs, "triton_rms_norm.py"))
    dc_ae = importlib.import_module("efficientvit.models.efficientvit.dc_ae")
    ops = sys.modules["efficientvit.models.nn.ops"]
    norm = sys.modules["efficientvit.models.nn.norm"]
    assert norm.TritonRMSNorm2dFunc is sys.modules["efficientvit.models.nn.triton_rms_norm"].TritonRMSNorm2dFunc
    return dc_ae, ops, norm


def check_rms_stand_in(official, stubs):
    """Runs the official Triton forward kernel (triton_rms_norm.py, unmodified) in the interpreter stub and
    compares it with the stand-in TritonRMSNorm2dFunc: identical bits."""
    interp = os.path.join(stubs, "triton-interpreter")
    sys.path.insert(0, interp)
    try:
        kernel_module = load_by_path("official_triton_rms_norm", os.path.join(
            official, "efficientvit", "efficientvit", "models", "nn", "triton_rms_norm.py"))
    finally:
        sys.path.remove(interp)
        for name in ("triton", "triton.language", "official_triton_rms_norm"):
            sys.modules.pop(name, None)
    stand_in = sys.modules["efficientvit.models.nn.triton_rms_norm"].TritonRMSNorm2dFunc
    g = torch.Generator().manual_seed(7)
    for shape in ((2, 8, 5, 60), (1, 64, 2, 3), (2, 32, 17, 19)):
        x = torch.randn(shape, generator=g) * 3
        w = 1 + 0.1 * torch.randn(shape[1], generator=g)
        b = 0.1 * torch.randn(shape[1], generator=g)
        x_arg = x.reshape(shape[0], shape[1], -1)
        M, C, N = x_arg.shape
        y = torch.empty_like(x)
        rrms = torch.empty((M, N), dtype=torch.float32)
        num_blocks = (N + 255) // 256
        kernel_module._rms_norm_2d_fwd_fused[(M * num_blocks,)](
            x_arg, y, w, b, rrms, M, C, N, num_blocks, 1e-5, BLOCK_SIZE=256, num_warps=8, num_ctas=1)
        with torch.no_grad():
            mine = stand_in.apply(x, w, b, 1e-5)
        assert torch.equal(mine, y), shape
        ref = x.double() * torch.rsqrt(x.double().square().mean(1, keepdim=True) + 1e-5)
        ref = ref * w.double()[:, None, None] + b.double()[:, None, None]
        assert (mine.double() - ref).abs().max().item() < 1e-5
    print("  TritonRMSNorm2dFunc stand-in == official Triton forward kernel (interpreted), bit for bit")


# ------------------------------------------------------------------------------------ configuration

def parse_value(text):
    if text.startswith("[") and text.endswith("]"):
        return [parse_value(t) for t in text[1:-1].split(",")] if len(text) > 2 else []
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def official_dotlist(official, name):
    """The cfg_str of dc_ae_f32c32(name) in dc_ae.py (read with ast), as an ordered dict."""
    path = os.path.join(official, "efficientvit", "efficientvit", "models", "efficientvit", "dc_ae.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "dc_ae_f32c32")
    for node in ast.walk(func):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and \
                name in ast.literal_eval(node.test.comparators[0]):
            assign = next(n for n in node.body if isinstance(n, ast.Assign) and n.targets[0].id == "cfg_str")
            text = assign.value.value
            return text, collections.OrderedDict(
                (item.split("=", 1)[0], parse_value(item.split("=", 1)[1])) for item in text.split(" "))
    raise KeyError(name)


def official_config(dc_ae, official, template, changes=None):
    """The DCAEConfig of the official cfg_str of `template` with `changes` (dotted keys) applied,
    and the cfg_str."""
    text, dotlist = official_dotlist(official, template)
    for key, value in (changes or {}).items():
        assert key in dotlist, key
        dotlist[key] = value
    top = {k: v for k, v in dotlist.items() if "." not in k}
    enc = {k[len("encoder."):]: v for k, v in dotlist.items() if k.startswith("encoder.")}
    dec = {k[len("decoder."):]: v for k, v in dotlist.items() if k.startswith("decoder.")}
    assert len(top) + len(enc) + len(dec) == len(dotlist)
    cfg = dc_ae.DCAEConfig(**top)
    # the official default_factory sets in_channels / latent_channels to "${..in_channels}" /
    # "${..latent_channels}", which OmegaConf resolves to the top-level values: done here directly.
    cfg.encoder = dc_ae.EncoderConfig(in_channels=cfg.in_channels, latent_channels=cfg.latent_channels, **enc)
    cfg.decoder = dc_ae.DecoderConfig(in_channels=cfg.in_channels, latent_channels=cfg.latent_channels, **dec)
    return cfg, text


def full_counts(dc_ae, official, template):
    """Parameter and state-dict tensor counts of the full official f32c32 network (its own config, unchanged)."""
    cfg, text = official_config(dc_ae, official, template)
    model = dc_ae.DCAE(cfg)
    counts = collections.OrderedDict([("template", template), ("cfg_str", text),
                                      ("parameters", sum(p.numel() for p in model.parameters())),
                                      ("tensors", len(model.state_dict()))])
    del model
    return counts


def build_config(dc_ae, official, spec):
    changes = collections.OrderedDict([
        ("latent_channels", spec["latent_channels"]),
        ("encoder.width_list", spec["widths"]), ("encoder.depth_list", spec["encoder_depths"]),
        ("decoder.width_list", spec["widths"]), ("decoder.depth_list", spec["decoder_depths"]),
    ])
    cfg, text = official_config(dc_ae, official, spec["template"], changes)
    return cfg, text, changes


# ------------------------------------------------------------------------------------------ weights

def randomise(model, ops):
    norm_params, unnormed = set(), {}
    blocks = [n + "." for n, m in model.named_modules() if isinstance(m, ops.EfficientViTBlock)]
    for mname, module in model.named_modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)):
            norm_params.add(mname + ".weight")
        if isinstance(module, torch.nn.Conv2d) and not any(mname.startswith(b) for b in blocks):
            fan_in = module.weight[0].numel()
            unnormed[mname + ".weight"] = UNNORMED_GAIN / fan_in ** 0.5
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            noise = torch.randn(prm.shape, generator=g)
            if name in norm_params:
                assert prm.dim() == 1
                prm.copy_(1.0 + 0.1 * noise)
            else:
                prm.copy_(unnormed.get(name, STD) * noise)
        for mname, module in model.named_modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(1.0 + 0.5 * torch.rand(module.running_var.shape, generator=g))
    return len(norm_params), sorted(unnormed)


# ----------------------------------------------------------------------------------- diffusers names

def diffusers_name(key):
    """Original DC-AE key -> [(diffusers key, how)] derived from the module structures (independent of
    the converter's string rules, against which it is checked)."""
    p = key.split(".")
    side = p[0]
    if p[1] == "project_in":
        if side == "encoder":  # ConvLayer (factor 1) or ConvPixelUnshuffleDownSampleLayer (factor 2)
            if len(p) == 4:
                assert p[2] == "conv", key
                return [("encoder.conv_in." + p[3], None)]
            assert p[2:4] == ["conv", "conv"] and len(p) == 5, key
            return [("encoder.conv_in.conv." + p[4], None)]
        assert p[2:4] == ["main", "conv"], key
        return [("decoder.conv_in." + p[4], None)]
    if p[1] == "project_out":
        if side == "encoder":
            assert p[2:6] == ["main", "op_list", "0", "conv"], key
            return [("encoder.conv_out." + p[6], None)]
        assert p[2] == "op_list", key
        if p[3] == "0":
            return [("decoder.norm_out." + p[4], None)]
        assert p[3] == "2" and p[4] == "conv", key
        return [("decoder.conv_out." + ".".join(p[5:]), None)]
    assert p[1] == "stages" and p[3] == "op_list", key
    prefix = "%s.%s.%s.%s." % (side, "down_blocks" if side == "encoder" else "up_blocks", p[2], p[4])
    rest = p[5:]
    if rest[0] == "main" and rest[1] == "conv":  # down / up block: ResidualBlock(main=..., shortcut)
        return [(prefix + "conv." + rest[-1], None)]
    if rest[0] == "main" and rest[1] in ("conv1", "conv2"):  # ResBlock
        assert rest[2] in ("conv", "norm")
        return [(prefix + (rest[1] if rest[2] == "conv" else "norm") + "." + rest[3], None)]
    if rest[0] == "context_module":
        assert rest[1] == "main"
        if rest[2] == "qkv":
            assert rest[3:] == ["conv", "weight"]
            return [(prefix + "attn.to_%s.weight" % n, ("chunk", i)) for i, n in enumerate("qkv")]
        if rest[2] == "aggreg":
            return [(prefix + "attn.to_qkv_multiscale.%s.%s.weight"
                     % (rest[3], ("proj_in", "proj_out")[int(rest[4])]), None)]
        assert rest[2] == "proj"
        if rest[3] == "conv":
            return [(prefix + "attn.to_out.weight", ("squeeze",))]
        return [(prefix + "attn.norm_out." + rest[4], None)]
    assert rest[0] == "local_module" and rest[1] == "main", key
    names = {"inverted_conv": "conv_inverted", "depth_conv": "conv_depth", "point_conv": "conv_point"}
    if rest[3] == "norm":
        return [(prefix + "conv_out.norm." + rest[4], None)]
    return [(prefix + "conv_out.%s.%s" % (names[rest[2]], rest[4]), None)]


def to_diffusers(state):
    out = collections.OrderedDict()
    for key, value in state.items():
        for name, how in diffusers_name(key):
            assert name not in out, name
            if how is None:
                out[name] = value
            elif how[0] == "squeeze":
                out[name] = value[:, :, 0, 0]
            else:
                out[name] = value.chunk(3, dim=0)[how[1]][:, :, 0, 0]
    return out


def run_diffusers_converter(official, state, config_name):
    """diffusers' scripts/convert_dcae_to_diffusers.py convert_ae(), run unchanged on our state dict:
    its module-level assignments and functions are extracted with ast (its imports are skipped);
    hf_hub_download / load_file / AutoencoderDC are replaced by I/O stand-ins that hand over the state
    dict and record what load_state_dict(strict=True) receives."""
    path = os.path.join(official, "diffusers", "scripts", "convert_dcae_to_diffusers.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign))]
    captured = {}

    class AutoencoderDC:
        def __init__(self, **config):
            captured["config"] = config

        def to(self, dtype):
            assert dtype == torch.float32
            return self

        def load_state_dict(self, sd, strict):
            assert strict
            captured["state"] = sd

    ns = {"torch": torch, "Dict": Dict, "Any": Any, "AutoencoderDC": AutoencoderDC,
          "hf_hub_download": lambda repo, filename: "%s/%s" % (repo, filename),
          "load_file": lambda _: collections.OrderedDict((k, v.clone()) for k, v in state.items())}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    ns["convert_ae"](config_name, torch.float32)
    return captured["state"], captured["config"], ns["AE_KEYS_RENAME_DICT"]


def run_single_file_converter(official, state):
    """diffusers' loaders/single_file_utils.py convert_autoencoder_dc_checkpoint_to_diffusers (self-contained;
    extracted with ast), run unchanged on a copy of the state dict."""
    path = os.path.join(official, "diffusers", "src", "diffusers", "loaders", "single_file_utils.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name == "convert_autoencoder_dc_checkpoint_to_diffusers"]
    assert len(body) == 1
    ns = {"torch": torch}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    return ns["convert_autoencoder_dc_checkpoint_to_diffusers"](
        collections.OrderedDict((k, v.clone()) for k, v in state.items()))


def diffusers_config(full, case):
    config = json.loads(json.dumps(full))  # tuples -> lists
    spec = CASES[case]
    config.update(latent_channels=spec["latent_channels"],
                  encoder_block_out_channels=spec["widths"], decoder_block_out_channels=spec["widths"],
                  encoder_layers_per_block=spec["encoder_depths"], decoder_layers_per_block=spec["decoder_depths"])
    return config


def build_diffusers_model(official, config):
    """diffusers' AutoencoderDC built from its own source (autoencoder_dc.py and the blocks it uses, read
    with ast): a check of the renamed keys, shapes and outputs, not a fixture."""
    src = os.path.join(official, "diffusers", "src", "diffusers", "models")
    wanted = [("activations.py", ["ACT2CLS", "get_activation"]),
              ("normalization.py", ["RMSNorm", "get_normalization"]),
              ("attention_processor.py", ["SanaMultiscaleAttentionProjection", "SanaMultiscaleLinearAttention",
                                          "SanaMultiscaleAttnProcessor2_0"]),
              ("transformers/sana_transformer.py", ["GLUMBConv"]),
              ("autoencoders/autoencoder_dc.py", ["ResBlock", "EfficientViTBlock", "get_block", "DCDownBlock2d",
                                                   "DCUpBlock2d", "Encoder", "Decoder", "AutoencoderDC"])]
    module = types.ModuleType("diffusers_extracted.models.normalization")
    module.__package__ = "diffusers_extracted.models"
    for name in ("diffusers_extracted", "diffusers_extracted.models"):
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__path__ = []
    sys.modules[module.__name__] = module  # for `from .normalization import get_normalization`
    import numbers
    ns = module.__dict__
    ns.update(torch=torch, nn=torch.nn, F=torch.nn.functional, numbers=numbers,
              is_torch_npu_available=lambda: False)
    for rel, names in wanted:
        path = os.path.join(src, rel)
        with open(path) as f:
            tree = ast.parse(f.read())
        nodes = []
        for node in tree.body:
            name = node.targets[0].id if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                else getattr(node, "name", None)
            if name not in names:
                continue
            if name == "AutoencoderDC":  # __init__, _encode, _decode only; nn.Module instead of the mixins
                methods = [m for m in node.body if isinstance(m, ast.FunctionDef)
                           and m.name in ("__init__", "_encode", "_decode")]
                assert len(methods) == 3
                for m in methods:
                    m.decorator_list = []  # @register_to_config (config bookkeeping only)
                node = ast.ClassDef(name=name, bases=[ast.parse("nn.Module", mode="eval").body], keywords=[],
                                    body=methods, decorator_list=[])
            nodes.append(node)
        assert len(nodes) == len(names), (rel, [getattr(n, "name", None) for n in nodes])
        exec(compile(ast.fix_missing_locations(ast.Module(body=nodes, type_ignores=[])), path, "exec"), ns)
    return ns["AutoencoderDC"](**config).eval()


# ------------------------------------------------------------------------------------------ running

class BranchRecorder:
    """Records which LiteMLA function runs (sys.setprofile: observation only, no code is replaced)."""

    def __init__(self, model, ops):
        self.names = {id(m): n for n, m in model.named_modules() if isinstance(m, ops.LiteMLA)}
        self.codes = {}
        for fn in ("relu_linear_att", "relu_quadratic_att"):
            wrapped = getattr(ops.LiteMLA, fn)
            code = getattr(wrapped, "__wrapped__", wrapped).__code__
            self.codes[code] = fn[len("relu_"):-len("_att")]
        self.calls = []
        self.hooks = [m.register_forward_pre_hook(self.pre) for n, m in model.named_modules()
                      if isinstance(m, ops.LiteMLA)]
        self.expected = []

    def pre(self, module, inputs):
        h, w = inputs[0].shape[-2:]
        self.expected.append((self.names[id(module)], h * w, "linear" if h * w > module.dim else "quadratic"))

    def profile(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            qkv = frame.f_locals["qkv"]
            self.calls.append((self.names[id(frame.f_locals["self"])], qkv.shape[-2] * qkv.shape[-1],
                               self.codes[frame.f_code]))

    def run(self, fn, x):
        self.calls, self.expected = [], []
        sys.setprofile(self.profile)
        try:
            y = fn(x)
        finally:
            sys.setprofile(None)
        assert self.calls == self.expected and self.calls, (self.calls, self.expected)
        return y, {name: "%s (%d tokens)" % (branch, n) for name, n, branch in self.calls}

    def close(self):
        for h in self.hooks:
            h.remove()


def stats(name, t):
    print("  %-12s %-18s std %.4g  max|.| %.4g" % (name, tuple(t.shape), t.std().item(), t.abs().max().item()))


def stage_stats(model, x, z):
    """Prints the std after each stage (to check that the activations stay O(1))."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, o.std().item())))
             for n, m in model.named_modules()
             if n.count(".") == 2 and ".stages." in n or n in ("encoder.project_in", "encoder.project_out",
                                                              "decoder.project_in", "decoder.project_out")]
    with torch.no_grad():
        model.encode(x)
        model.decode(z)
    for h in hooks:
        h.remove()
    print("  stage std: " + ", ".join("%s %.3g" % (n.replace("coder.", "").replace("stages.", "s"), s)
                                      for n, s in seen))


def case(dc_ae, ops, official, name):
    spec = CASES[name]
    cfg, template, changes = build_config(dc_ae, official, spec)
    torch.manual_seed(0)
    model = dc_ae.DCAE(cfg).eval()
    n_norms, unnormed = randomise(model, ops)
    state = model.state_dict()
    params = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters, %d tensors, %d norm weights" % (name, params, len(state), n_norms))

    recorder = BranchRecorder(model, ops)
    g = torch.Generator().manual_seed(1)
    tensors, branches = collections.OrderedDict(), collections.OrderedDict()
    with torch.no_grad():
        for h, w in SIZES:
            tag = "%dx%d" % (h, w)
            x = torch.rand(BATCH, 3, h, w, generator=g) * 2 - 1
            zr = torch.randn(BATCH, cfg.latent_channels, h // 32, w // 32, generator=g)
            z, enc_branch = recorder.run(model.encode, x)
            y, dec_branch = recorder.run(model.decode, z)
            tensors.update([("x_" + tag, x), ("z_" + tag, z), ("y_" + tag, y)])
            if (h, w) == SIZES[0]:  # a latent not from the encoder: the smallest size only (file size)
                yr, dec_branch_r = recorder.run(model.decode, zr)
                assert dec_branch == dec_branch_r
                tensors.update([("zr_" + tag, zr), ("yr_" + tag, yr)])
            branches[tag] = {"encode": enc_branch, "decode": dec_branch}
    recorder.close()
    tensors = collections.OrderedDict((k, v.contiguous()) for k, v in tensors.items())
    for k, v in tensors.items():
        if not k.startswith("x_") and not k.startswith("zr_"):
            stats(k, v)
    stage_stats(model, tensors["x_128x128"], tensors["z_128x128"])
    ran = {b.split()[0] for t in branches.values() for part in t.values() for b in part.values()}
    assert ran == {"linear", "quadratic"}, ran
    at32 = {tag: next(v for k, v in t["encode"].items() if k.startswith("encoder.stages.5.")) for tag, t in branches.items()}
    print("  LiteMLA at 1/32 (encoder stage 5): " + ", ".join("%s %s" % kv for kv in at32.items()))

    # diffusers layout
    converted = to_diffusers(state)
    diff_check = "OFFICIAL_DIR/diffusers absent: not cross-checked"
    full_config = None
    if os.path.isdir(os.path.join(official, "diffusers")):
        theirs, full_config, rename = run_diffusers_converter(official, state, spec["template"])
        single_file = run_single_file_converter(official, state)
        for other in (theirs, single_file):
            assert set(other) == set(converted), set(other) ^ set(converted)
            for k in other:
                assert torch.equal(other[k], converted[k]), k
        dconfig = diffusers_config(full_config, name)
        dmodel = build_diffusers_model(official, dconfig)
        dstate = dmodel.state_dict()
        assert set(dstate) == set(converted), set(dstate) ^ set(converted)
        for k, v in dstate.items():
            assert v.shape == converted[k].shape and v.dtype == converted[k].dtype, k
        dmodel.load_state_dict(converted, strict=True)
        worst = 0.0
        with torch.no_grad():
            for h, w in SIZES:
                tag = "%dx%d" % (h, w)
                pairs = [("z_", dmodel._encode(tensors["x_" + tag])), ("y_", dmodel._decode(tensors["z_" + tag]))]
                if "zr_" + tag in tensors:
                    pairs.append(("yr_", dmodel._decode(tensors["zr_" + tag])))
                for key, got in pairs:
                    ref = tensors[key + tag]
                    worst = max(worst, ((got - ref).abs().max() / ref.abs().max()).item())
        assert worst < 1e-5, worst
        print("  diffusers: convert_ae() and single_file_utils give the same %d keys and tensors; AutoencoderDC has "
              "exactly these keys and shapes and reproduces z / y / yr (max error %.2g of max|ref|)" % (len(theirs), worst))
        diff_check = ("convert_ae() of scripts/convert_dcae_to_diffusers.py and convert_autoencoder_dc_checkpoint_"
                      "to_diffusers() of src/diffusers/loaders/single_file_utils.py give the same keys and tensors; "
                      "diffusers' AutoencoderDC (autoencoder_dc.py) built with diffusers_config has exactly these "
                      "state_dict keys and shapes, loads them strictly and reproduces z, y, yr within %.1g of "
                      "max|ref|" % 1e-5)

    write_safetensors(os.path.join(OUT, name + "_original.safetensors"), state)
    write_safetensors(os.path.join(OUT, name + "_diffusers.safetensors"), converted)
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors)
    info = collections.OrderedDict()
    info["official"] = COMMITS
    info["template"] = spec["template"]
    info["template_cfg_str"] = template
    info["changed"] = changes
    info["config"] = dataclasses.asdict(cfg)
    info["parameters"] = params
    info["tensors"] = len(state)
    info["diffusers_tensors"] = len(converted)
    info["diffusers_config"] = dconfig if full_config else None
    info["diffusers_scaling_factor_of_template"] = full_config.get("scaling_factor") if full_config else None
    info["diffusers_check"] = diff_check
    info["sizes"] = ["%dx%d" % s for s in SIZES]
    info["batch"] = BATCH
    info["litemla_branch"] = branches
    info["weights_init"] = ("official init with torch.manual_seed(0), then every parameter in named_parameters() "
                            "order = %g * randn (norm weights 1 + 0.1 randn; the weights of every Conv2d outside "
                            "EfficientViTBlock, listed in unnormed_conv_weights, %g / sqrt(fan_in) * randn) "
                            "from torch.Generator()"
                            ".manual_seed(%d), then for every BatchNorm2d in named_modules() order running_mean "
                            "= 0.1 randn, running_var = 1 + 0.5 rand from the same generator"
                            % (STD, UNNORMED_GAIN, SEED))
    info["unnormed_conv_weights"] = unnormed
    info["inputs"] = ("torch.Generator().manual_seed(1), per size in order: x = rand(%d,3,H,W)*2-1, "
                      "zr = randn(%d,%d,H/32,W/32)" % (BATCH, BATCH, cfg.latent_channels))
    text = json.dumps(info, indent=1)
    text = re.sub(r"\[\n\s*([^\[\]{}\s][^\[\]{}]*?)\n\s*\]",  # scalar lists on one line
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        f.write(text + "\n")
    return state, converted, tensors


def check_outputs(results):
    for name, (state, converted, tensors) in results.items():
        for suffix, ref in (("_original", state), ("_diffusers", converted), ("_io", tensors)):
            back = read_safetensors(os.path.join(OUT, name + suffix + ".safetensors"))
            assert set(back) == set(ref), name + suffix
            for k, v in ref.items():
                assert back[k].dtype == v.dtype and torch.equal(back[k], v), (name + suffix, k)
    total = 0
    for fname in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, fname))
        total += size
        print("  %-28s %9d bytes" % (fname, size))
    print("  %-28s %9d bytes" % ("total", total))


def main():
    start = time.time()
    official = os.path.abspath(sys.argv[1])
    stubs = write_stubs(official)
    dc_ae, ops, _ = load_official(official, stubs)
    check_rms_stand_in(official, stubs)
    os.makedirs(OUT, exist_ok=True)
    results = collections.OrderedDict((name, case(dc_ae, ops, official, name)) for name in CASES)
    full = collections.OrderedDict()
    for short, template in (("sana", "dc-ae-f32c32-sana-1.0"), ("in", "dc-ae-f32c32-in-1.0")):
        full[short] = full_counts(dc_ae, official, template)
        print("%s: %d parameters, %d tensors" % (template, full[short]["parameters"], full[short]["tensors"]))
    with open(os.path.join(OUT, "f32c32.json"), "w") as f:
        f.write(json.dumps(full, indent=1) + "\n")
    check_outputs(results)
    print("dc-ae fixtures written (%.1f s)" % (time.time() - start))


if __name__ == "__main__":
    main()
