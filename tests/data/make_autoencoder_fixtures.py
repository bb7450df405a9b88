#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes autoencoders/*.pt and *.safetensors (tiny LDM first-stage models: CompVis and diffusers
key layouts), autoencoders/*_io.safetensors (inputs and the outputs of the *official* encode /
decode / quantize) and autoencoders/*.json (the configuration each case was built with) for the
autoencoder reference tests.

    /usr/bin/python3 make_autoencoder_fixtures.py OFFICIAL_DIR

OFFICIAL_DIR layout (none of it is committed: only its outputs are):

    OFFICIAL_DIR/latent-diffusion/     checkout of github.com/CompVis/latent-diffusion (commit
                                       a506df5, 2022-07-27), used unmodified: ldm.models.autoencoder
                                       (AutoencoderKL, VQModelInterface), ldm.modules.diffusionmodules
                                       .model (Encoder, Decoder) and ldm.modules.distributions
                                       .distributions (DiagonalGaussianDistribution) are imported.
    OFFICIAL_DIR/taming-transformers/  checkout of github.com/CompVis/taming-transformers (commit
                                       3ba01b2, 2022-11-07), used unmodified: VectorQuantizer2 of
                                       taming/modules/vqvae/quantize.py.
    OFFICIAL_DIR/diffusers/            optional, checkout of github.com/huggingface/diffusers (commit
                                       58eb52c checked): when present, the key renaming below is
                                       cross-checked against its own converter (see KL case).
    OFFICIAL_DIR/stubs/                written by this script (STUBS below), stand-ins for packages
                                       Debian 12 lacks, checked against the versions latent-diffusion's
                                       environment.yaml pins:
        pytorch_lightning/  pytorch-lightning 1.4.2: LightningModule, a torch.nn.Module subclass whose
                            __init__(*args, **kwargs) sets the same plain attributes (trainer=None,
                            precision=32, use_amp=False, ...) as pytorch_lightning/core/lightning.py;
                            no parameter or buffer (the real one registers none either); __version__.
                            Only the constructors and encode/decode run, no Lightning hook.
        einops/             einops 0.3.0: rearrange for pure axis permutations ('b c h w -> b h w c',
                            'n d -> d n', 'b h w c -> b c h w', all that VectorQuantizer2.forward uses),
                            done as 0.3.0's TransformRecipe.apply does it: reshape, permute, reshape
                            (a view, as there); anything else raises. repeat raises (imported by
                            ldm/modules/attention.py and diffusionmodules/util.py, never called here).
        PIL/                Pillow: empty Image, ImageDraw, ImageFont modules (ldm/util.py imports them
                            at module level for log_txt_as_img only, never called here).
    omegaconf is not needed: the configs are passed as plain dicts, which is all that AutoencoderKL /
    VQModel / instantiate_from_config read (ddconfig["z_channels"], config["target"]).

No monkeypatch: the official classes run unchanged under torch.no_grad() in eval mode. The loss is
lossconfig {"target": "torch.nn.Identity"} (no parameters, so no loss.* key).

Weights: the official model is built with torch.manual_seed(0), then every parameter, in
named_parameters() order, is refilled from torch.Generator().manual_seed(SEED): randn * 0.1, except
GroupNorm weights ("norm" in the name, 1-D, .weight) = 1 + 0.1 randn, the VQ codebook
quantize.embedding.weight = randn (std 1, so that codes are spread) and the VQ quant_conv.weight
= randn * VQ_QUANT_CONV_STD (so that the pre-quantisation latent h is O(1) like the codebook and
the indices use most of the 16 codes). float32 throughout.

The weight files are bigger than the other fixtures (2.6 to 2.9 MB each): the official Normalize is
GroupNorm(32 groups), so ch >= 32, and ch_mult [1, 2] (the smallest with a channel change, i.e.
nin_shortcut, and a down/upsample) has ~0.7 M float32 parameters per model.

KL case (kl_*): ddconfig KL_DDCONFIG, embed_dim 4, attention at resolution 8 (encoder down.1.attn.0,
decoder up.1.attn.0/1, placed by the *construction* resolution 16, not by the input size).
    kl_compvis.pt           {"state_dict": OrderedDict("first_stage_model." + key of the
                            AutoencoderKL state_dict, after one unrelated UNet tensor
                            "model.diffusion_model.input_blocks.0.0.weight" (8, 4, 3, 3))}: the
                            layout of an LDM / Stable Diffusion checkpoint.
    kl_diffusers.safetensors  the same weights under diffusers AutoencoderKL names (diffusers_name):
                            down.i.block.j -> down_blocks.i.resnets.j, down.i.attn.j ->
                            down_blocks.i.attentions.j (AttnDownEncoderBlock2D), down.i.downsample.conv
                            -> down_blocks.i.downsamplers.0.conv, mid.block_1/2 -> mid_block.resnets.0/1,
                            mid.attn_1 -> mid_block.attentions.0, up.i -> up_blocks.(n-1-i)
                            (AttnUpDecoderBlock2D where up.i has attention), up.i.upsample.conv ->
                            up_blocks.(n-1-i).upsamplers.0.conv, nin_shortcut -> conv_shortcut, norm_out
                            -> conv_norm_out; inside attention norm -> group_norm, q/k/v -> to_q/to_k/to_v,
                            proj_out -> to_out.0 with the 1x1 conv weights squeezed to (C, C).
                            Derived from diffusers' scripts/convert_vae_pt_to_diffusers.py
                            (custom_convert_ldm_vae_checkpoint) and pipelines/stable_diffusion/
                            convert_from_ckpt.py (renew_vae_*_paths, assign_to_checkpoint); with
                            OFFICIAL_DIR/diffusers present those functions are extracted (ast) and run
                            on the state dict and must give exactly the same keys and tensors.
    kl_io.safetensors       x (2,3,16,16) -> mean, std (DiagonalGaussianDistribution of encode(x));
                            z (2,4,8,8) -> decoded = decode(z); x_wide (1,3,16,24) -> mean_wide,
                            std_wide; z_wide (1,4,4,6) -> decoded_wide.
    kl.json                 ddconfig, embed_dim, the diffusers config, commits, rules.

VQ case (vq_*): ddconfig VQ_DDCONFIG, n_embed 16, embed_dim 3, VectorQuantizer2(beta 0.25, legacy,
remap None, sane_index_shape False) as VQModel builds it.
    vq_compvis.pt           torch.save(VQModelInterface.state_dict()) (encoder.*, decoder.*,
                            quantize.embedding.weight, quant_conv.*, post_quant_conv.*).
    vq_io.safetensors       x (2,3,16,16) -> h = encode(x) (pre-quantisation), quant = quantize(h)[0],
                            indices (int64, min_encoding_indices reshaped (N, h, w)); z (2,3,8,8) =
                            randn * std(h) -> decoded_quantized = decode(z), decoded_raw =
                            decode(z, force_not_quantize=True).
    vq.json                 ddconfig, n_embed, embed_dim, commits, the smallest distance margin.
"""
import ast
import collections
import contextlib
import io
import json
import os
import struct
import sys

import torch

from make_dit_fixtures import read_safetensors, write_safetensors  # F32 / I64, the stdlib dtype order

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "autoencoders")
SEED = 2718
STD = 0.1
VQ_QUANT_CONV_STD = 0.3
COMMITS = {
    "latent-diffusion": "a506df5756472e2ebaf9078affdde2c4f1502cd4 (2022-07-27)",
    "taming-transformers": "3ba01b241669f5ade541ce990f7650a3b8f65318 (2022-11-07)",
}
DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"

KL_DDCONFIG = dict(double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32,
                   ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
KL_EMBED_DIM = 4
VQ_DDCONFIG = dict(double_z=False, z_channels=3, resolution=16, in_channels=3, out_ch=3, ch=32,
                   ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
VQ_N_EMBED = 16
VQ_EMBED_DIM = 3
LOSS = {"target": "torch.nn.Identity"}
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"

STUBS = {
    "pytorch_lightning/__init__.py": '''"""Stand-in for pytorch-lightning 1.4.2 (see make_autoencoder_fixtures.py)."""
import torch

__version__ = "1.4.2"


class LightningModule(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainer = None
        self._distrib_type = None
        self._device_type = None
        self.use_amp = False
        self.precision = 32
''',
    "einops/__init__.py": '''"""Stand-in for einops 0.3.0: pure-permutation rearrange (see make_autoencoder_fixtures.py)."""


def rearrange(tensor, pattern, **axes_lengths):
    left, right = (side.split() for side in pattern.split("->"))
    if axes_lengths or sorted(left) != sorted(right) or len(set(left)) != len(left) or \\
            any(not a.isidentifier() for a in left) or len(left) != tensor.dim():
        raise NotImplementedError("einops stand-in: only pure permutations, got %r" % pattern)
    shape = tuple(tensor.shape)
    tensor = tensor.reshape(shape)
    tensor = tensor.permute([left.index(a) for a in right])
    return tensor.reshape([shape[left.index(a)] for a in right])


def repeat(tensor, pattern, **axes_lengths):
    raise NotImplementedError("einops stand-in: repeat is not used by the autoencoders")
''',
    "PIL/__init__.py": '"""Stand-in for Pillow: ldm/util.py imports Image, ImageDraw, ImageFont, unused here."""\n',
    "PIL/Image.py": "",
    "PIL/ImageDraw.py": "",
    "PIL/ImageFont.py": "",
}


def write_stubs(official):
    for rel, text in STUBS.items():
        path = os.path.join(official, "stubs", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def randomise(model, overrides=None):
    overrides = overrides or {}
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            noise = torch.randn(prm.shape, generator=g)
            if name in overrides:
                prm.copy_(overrides[name] * noise)
            elif "norm" in name and prm.dim() == 1 and name.endswith(".weight"):
                prm.copy_(1.0 + 0.1 * noise)
            else:
                prm.copy_(STD * noise)


def build(cls, **kwargs):
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # the official constructors print shapes
        model = cls(**kwargs)
    return model.eval()


# ----------------------------------------------------------------------------------- diffusers names

ATTN_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def diffusers_name(key, levels):
    """CompVis AutoencoderKL key -> diffusers AutoencoderKL key (and whether to squeeze 1x1 conv)."""
    part = key.split(".")
    if part[0] in ("quant_conv", "post_quant_conv"):
        return key, False
    side, rest = part[0], part[1:]
    if rest[0] == "norm_out":
        return ".".join([side, "conv_norm_out"] + rest[1:]), False
    if rest[0] in ("conv_in", "conv_out"):
        return key, False
    if rest[0] == "mid":
        if rest[1].startswith("block_"):
            new = ["mid_block", "resnets", str(int(rest[1][6:]) - 1)]
            return ".".join([side] + new + resnet_tail(rest[2:])), False
        assert rest[1] == "attn_1", key
        return attention(side, ["mid_block", "attentions", "0"], rest[2:])
    level = int(rest[1])
    if rest[0] == "down":
        block = ["down_blocks", str(level)]
        sampler = ("downsample", "downsamplers")
    else:
        assert rest[0] == "up", key
        block = ["up_blocks", str(levels - 1 - level)]
        sampler = ("upsample", "upsamplers")
    if rest[2] == "block":
        return ".".join([side] + block + ["resnets", rest[3]] + resnet_tail(rest[4:])), False
    if rest[2] == "attn":
        return attention(side, block + ["attentions", rest[3]], rest[4:])
    assert rest[2] == sampler[0] and rest[3] == "conv", key
    return ".".join([side] + block + [sampler[1], "0", "conv"] + rest[4:]), False


def resnet_tail(tail):
    return ["conv_shortcut" if tail[0] == "nin_shortcut" else tail[0]] + tail[1:]


def attention(side, prefix, tail):
    name = ".".join([side] + prefix + [ATTN_NAMES[tail[0]]] + tail[1:])
    return name, tail[0] != "norm" and tail[-1] == "weight"


def to_diffusers(state, levels):
    out = collections.OrderedDict()
    for key, value in state.items():
        name, squeeze = diffusers_name(key, levels)
        assert name not in out, name
        out[name] = value[:, :, 0, 0].contiguous() if squeeze else value
    return out


def diffusers_config(ddconfig):
    """create_vae_diffusers_config of diffusers' convert_from_ckpt.py, image_size = resolution."""
    size = ddconfig["resolution"]
    outs = [ddconfig["ch"] * m for m in ddconfig["ch_mult"]]
    attn = [size // 2 ** i in ddconfig["attn_resolutions"] for i in range(len(outs))]
    return {
        "sample_size": size, "in_channels": ddconfig["in_channels"], "out_channels": ddconfig["out_ch"],
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in attn][::-1],
        "block_out_channels": outs, "latent_channels": ddconfig["z_channels"],
        "layers_per_block": ddconfig["num_res_blocks"], "norm_num_groups": 32,
    }


def check_against_diffusers(official, state, converted):
    """Runs diffusers' own converter functions (extracted with ast: diffusers cannot be imported)."""
    root = os.path.join(official, "diffusers")
    sources = [("scripts/convert_vae_pt_to_diffusers.py", {"custom_convert_ldm_vae_checkpoint"}),
               ("src/diffusers/pipelines/stable_diffusion/convert_from_ckpt.py",
                {"shave_segments", "renew_vae_resnet_paths", "renew_vae_attention_paths",
                 "assign_to_checkpoint", "conv_attn_to_linear"})]
    if not os.path.isdir(root):
        print("  (no OFFICIAL_DIR/diffusers: renaming not cross-checked)")
        return
    namespace = {"torch": torch}
    for rel, wanted in sources:
        with open(os.path.join(root, rel)) as f:
            tree = ast.parse(f.read())
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
        assert {n.name for n in funcs} == wanted, rel
        exec(compile(ast.Module(body=funcs, type_ignores=[]), rel, "exec"), namespace)
    theirs = namespace["custom_convert_ldm_vae_checkpoint"](collections.OrderedDict(state), None)
    assert set(theirs) == set(converted), (set(theirs) ^ set(converted))
    for k in theirs:
        assert theirs[k].shape == converted[k].shape and torch.equal(theirs[k], converted[k]), k
    print("  diffusers renaming identical to diffusers' custom_convert_ldm_vae_checkpoint (%d keys)" % len(theirs))


# ----------------------------------------------------------------------------------------- cases

def stats(name, t):
    t = t.float()
    print("  %-18s %-18s std %.4g  max|.| %.4g" % (name, tuple(t.shape), t.std().item(), t.abs().max().item()))


def write_json(name, info):
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def weights_note(extra=""):
    return ("official init with torch.manual_seed(0), then every parameter in named_parameters() order = "
            "%g * randn (GroupNorm weights 1 + 0.1 randn%s) from torch.Generator().manual_seed(%d)"
            % (STD, extra, SEED))


def kl_case(official):
    from ldm.models.autoencoder import AutoencoderKL
    from ldm.modules.distributions.distributions import DiagonalGaussianDistribution
    model = build(AutoencoderKL, ddconfig=dict(KL_DDCONFIG), lossconfig=LOSS, embed_dim=KL_EMBED_DIM)
    randomise(model)
    state = model.state_dict()
    assert not any(k.startswith("loss.") for k in state)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    z = torch.randn(2, KL_EMBED_DIM, 8, 8, generator=g)
    x_wide = torch.randn(1, 3, 16, 24, generator=g)
    z_wide = torch.randn(1, KL_EMBED_DIM, 4, 6, generator=g)
    unet = 0.1 * torch.randn(8, 4, 3, 3, generator=g)
    with torch.no_grad():
        post = model.encode(x)
        post_wide = model.encode(x_wide)
        assert isinstance(post, DiagonalGaussianDistribution)
        tensors = dict(x=x, mean=post.mean, std=post.std, z=z, decoded=model.decode(z),
                       x_wide=x_wide, mean_wide=post_wide.mean, std_wide=post_wide.std,
                       z_wide=z_wide, decoded_wide=model.decode(z_wide))
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    print("kl:")
    for k in ("mean", "std", "decoded", "mean_wide", "std_wide", "decoded_wide"):
        stats(k, tensors[k])
    ckpt = collections.OrderedDict([(UNET_KEY, unet)])
    for k, v in state.items():
        ckpt["first_stage_model." + k] = v
    torch.save({"state_dict": ckpt}, os.path.join(OUT, "kl_compvis.pt"))
    levels = len(KL_DDCONFIG["ch_mult"])
    converted = to_diffusers(state, levels)
    check_against_diffusers(official, state, converted)
    write_safetensors(os.path.join(OUT, "kl_diffusers.safetensors"), converted)
    write_safetensors(os.path.join(OUT, "kl_io.safetensors"), tensors)
    write_json("kl", {
        "ddconfig": KL_DDCONFIG, "embed_dim": KL_EMBED_DIM, "official": COMMITS,
        "diffusers_config": diffusers_config(KL_DDCONFIG),
        "diffusers_renaming_checked_against": "huggingface/diffusers %s scripts/convert_vae_pt_to_diffusers.py"
                                              % DIFFUSERS_COMMIT,
        "compvis_prefix": "first_stage_model.", "unrelated_key": UNET_KEY,
        "attention": "encoder down.1.attn.0, decoder up.1.attn.0 and up.1.attn.1 (curr_res 8 of the "
                     "construction resolution 16), mid.attn_1 in both; single head, scale C^-0.5",
        "posterior": "moments = quant_conv(encoder(x)); mean, logvar = chunk(moments, 2, dim=1); "
                     "logvar = clamp(logvar, -30, 20); std = exp(0.5 * logvar)",
        "decode": "decoder(post_quant_conv(z)); no scale_factor (LatentDiffusion applies it outside)",
        "norm": "GroupNorm(32 groups, eps 1e-6, affine)", "act": "x * sigmoid(x)",
        "downsample": "F.pad(x, (0, 1, 0, 1)) then Conv2d(3x3, stride 2, padding 0)",
        "upsample": "nearest x2 then Conv2d(3x3, padding 1)",
        "weights_init": weights_note(),
    })
    return tensors


def vq_case(official):
    from ldm.models.autoencoder import VQModelInterface
    model = build(VQModelInterface, ddconfig=dict(VQ_DDCONFIG), lossconfig=LOSS, n_embed=VQ_N_EMBED,
                  embed_dim=VQ_EMBED_DIM)
    randomise(model, {"quantize.embedding.weight": 1.0, "quant_conv.weight": VQ_QUANT_CONV_STD})
    state = model.state_dict()
    assert not any(k.startswith("loss.") for k in state)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        h = model.encode(x)
        quant, _, (_, _, ind) = model.quantize(h)
        indices = ind.reshape(h.shape[0], h.shape[2], h.shape[3])
        scale = float("%.3g" % h.std().item())
        z = scale * torch.randn(2, VQ_EMBED_DIM, 8, 8, generator=g)
        tensors = dict(x=x, h=h, quant=quant, indices=indices, z=z,
                       decoded_quantized=model.decode(z),
                       decoded_raw=model.decode(z, force_not_quantize=True))
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    # the margin between the best and second-best code (float64), so that index parity is robust
    e = model.quantize.embedding.weight.double()
    margins = []
    for t in (h, z):
        flat = t.double().permute(0, 2, 3, 1).reshape(-1, VQ_EMBED_DIM)
        d = ((flat[:, None, :] - e[None]) ** 2).sum(-1).sort(dim=1).values
        margins.append((d[:, 1] - d[:, 0]).min().item())
    print("vq:")
    for k in ("h", "quant", "decoded_quantized", "decoded_raw"):
        stats(k, tensors[k])
    print("  codes used by h: %d of %d, smallest margin h %.3g, z %.3g"
          % (indices.unique().numel(), VQ_N_EMBED, margins[0], margins[1]))
    torch.save(state, os.path.join(OUT, "vq_compvis.pt"))
    write_safetensors(os.path.join(OUT, "vq_io.safetensors"), tensors)
    write_json("vq", {
        "ddconfig": VQ_DDCONFIG, "n_embed": VQ_N_EMBED, "embed_dim": VQ_EMBED_DIM, "official": COMMITS,
        "quantizer": "taming VectorQuantizer2(n_e=16, e_dim=3, beta=0.25, legacy=True, remap=None, "
                     "sane_index_shape=False); d = |z|^2 + |e|^2 - 2 z.e, index = argmin (first on ties)",
        "indices_layout": "(N, h, w): flattened b h w order of min_encoding_indices",
        "z_scale": scale, "codes_used_by_h": indices.unique().numel(),
        "min_distance_margin": {"h": float("%.4g" % margins[0]), "z": float("%.4g" % margins[1])},
        "encode": "quant_conv(encoder(x)) (VQModelInterface.encode: no quantisation)",
        "decode": "decoder(post_quant_conv(quantize(h)[0])); force_not_quantize=True skips quantize",
        "weights_init": weights_note(", codebook quantize.embedding.weight = randn, quant_conv.weight = %g * randn"
                                     % VQ_QUANT_CONV_STD),
    })
    return tensors


def check_outputs(kl, vq):
    for name, ref in (("kl_io", kl), ("vq_io", vq)):
        back = read_safetensors(os.path.join(OUT, name + ".safetensors"))
        assert set(back) == set(ref), name
        for k, v in ref.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), (name, k)
    ckpt = torch.load(os.path.join(OUT, "kl_compvis.pt"))["state_dict"]
    diff = read_safetensors(os.path.join(OUT, "kl_diffusers.safetensors"))
    assert len(ckpt) == len(diff) + 1
    vq_state = torch.load(os.path.join(OUT, "vq_compvis.pt"))
    assert "quantize.embedding.weight" in vq_state
    for name in sorted(os.listdir(OUT)):
        print("  %-26s %8d bytes" % (name, os.path.getsize(os.path.join(OUT, name))))


def main():
    official = os.path.abspath(sys.argv[1])
    write_stubs(official)
    sys.path[:0] = [os.path.join(official, "stubs"), os.path.join(official, "latent-diffusion"),
                    os.path.join(official, "taming-transformers")]
    os.makedirs(OUT, exist_ok=True)
    kl = kl_case(official)
    vq = vq_case(official)
    check_outputs(kl, vq)
    print("autoencoder fixtures written")


if __name__ == "__main__":
    main()
