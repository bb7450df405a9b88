#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes samplers/*.safetensors: initial noise, per-step noise and the trajectories of the
*official* samplers on the tiny DiT/SiT weights of dit/*.pt, for test_sampler_reference.

    /usr/bin/python3 make_sampler_fixtures.py OFFICIAL_DIR SAMPLERS_DIR

OFFICIAL_DIR is the one make_dit_fixtures.py uses (dit_models.py, sit_models.py and the
timm stand-in). SAMPLERS_DIR holds DiT's `diffusion/` package (facebookresearch/DiT
ed81ce2) and SiT's `transport/` package (willisma/SiT 947f95b), unchanged. Neither is
committed. SiT imports torchdiffeq and tqdm, which Debian 12 does not package; the
stand-ins below implement torchdiffeq's fixed-grid `euler` and `heun2` exactly as
torchdiffeq does (y1 = y0 + dt f(t0, y0); heun2: k1 = f(t0, y0), k2 = f(t1, y0 + dt k1),
y1 = y0 + dt (k1 + k2) / 2, evaluated on the given grid) and a no-op tqdm.

Random draws: the official samplers draw their noise from the global generator
(th.randn_like in p_sample, th.randn in the SDE steps). They are recorded as they are
drawn, and the first half of each (the conditional rows; the second half belongs to
the discarded unconditional copy) becomes the fixture's per-step noise.
"""
import sys
import types

import torch

from make_dit_fixtures import write_safetensors


def install_standins():
    tqdm = types.ModuleType("tqdm")
    tqdm.tqdm = lambda it, *a, **k: it
    sys.modules["tqdm"] = tqdm
    sys.modules["tqdm.auto"] = tqdm

    diffeq = types.ModuleType("torchdiffeq")

    def odeint(func, y0, t, method, atol=None, rtol=None):
        ys = [y0]
        y = y0
        for t0, t1 in zip(t[:-1], t[1:]):
            dt = t1 - t0
            if method == "euler":
                y = y + dt * func(t0, y)
            elif method == "heun2":
                k1 = func(t0, y)
                k2 = func(t1, y + dt * k1)
                y = y + dt * (0.5 * k1 + 0.5 * k2)
            else:
                raise NotImplementedError(method)
            ys.append(y)
        return torch.stack(ys)
    diffeq.odeint = odeint
    sys.modules["torchdiffeq"] = diffeq


def load_model(lib, cls, path, patch=2, learn_sigma=True):
    model = getattr(lib, cls)(input_size=8, patch_size=patch, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                              num_classes=10, learn_sigma=learn_sigma).eval()
    model.load_state_dict(torch.load(path))
    return model


class Recorder:
    """Wraps a torch random function, keeping every draw."""
    def __init__(self, module, name):
        self.module, self.name, self.draws = module, name, []
        self.original = getattr(module, name)
        setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        out = self.original(*args, **kwargs)
        self.draws.append(out.clone())
        return out

    def restore(self):
        setattr(self.module.th if hasattr(self.module, "th") else self.module, self.name, self.original)


def first_half(t):
    return t[: t.shape[0] // 2]


def dit_cases(dit_models, diffusion):
    model = load_model(dit_models, "DiT", "dit/dit_p2_sigma.pt")
    n, cfg = 2, 4.0
    torch.manual_seed(11)
    z = torch.randn(n, 4, 8, 8)
    y = torch.tensor([1, 7])
    z2, y2 = torch.cat([z, z]), torch.cat([y, torch.tensor([10] * n)])
    kwargs = dict(y=y2, cfg_scale=cfg)

    # DDIM, eta 0, "ddim10": every state and x0 estimate.
    d = diffusion.create_diffusion("ddim10")
    xs, x0s = [z], []
    with torch.no_grad():
        for out in d.ddim_sample_loop_progressive(model.forward_with_cfg, z2.shape, z2, clip_denoised=False,
                                                  model_kwargs=kwargs, eta=0.0, device="cpu"):
            xs.append(first_half(out["sample"]))
            x0s.append(first_half(out["pred_xstart"]))
    write_safetensors("samplers/dit_ddim10_cfg4.safetensors",
                      {"z": z, "y": y, "x_t": torch.stack(xs), "x0": torch.stack(x0s)})

    # DDPM ancestral, "10" (0, 111, …, 999), learned sigma and (with the p4 model, which has
    # none) the fixed large variance; the noise of every step recorded.
    import diffusion.gaussian_diffusion as gdm
    fixed = load_model(dit_models, "DiT", "dit/dit_p4_nosigma.pt", patch=4, learn_sigma=False)
    for net, learn_sigma, name in ((model, True, "dit_ddpm10_cfg4"), (fixed, False, "dit_p4_ddpm10_cfg4")):
        d = diffusion.create_diffusion("10", learn_sigma=learn_sigma)
        rec = Recorder(gdm.th, "randn_like")
        xs = [z]
        with torch.no_grad():
            for out in d.p_sample_loop_progressive(net.forward_with_cfg, z2.shape, z2, clip_denoised=False,
                                                   model_kwargs=kwargs, device="cpu"):
                xs.append(first_half(out["sample"]))
        setattr(gdm.th, "randn_like", rec.original)
        noise = torch.stack([first_half(w) for w in rec.draws])
        write_safetensors("samplers/%s.safetensors" % name, {"z": z, "y": y, "noise": noise, "x_t": torch.stack(xs)})


def sit_cases(sit_models, transport_pkg):
    from transport import create_transport, Sampler
    import transport.integrators as integrators
    model = load_model(sit_models, "SiT", "dit/sit_p2_sigma.pt")
    n, cfg = 2, 4.0
    torch.manual_seed(12)
    z = torch.randn(n, 4, 8, 8)
    y = torch.tensor([3, 9])
    z2, y2 = torch.cat([z, z]), torch.cat([y, torch.tensor([10] * n)])
    sampler = Sampler(create_transport("Linear", "velocity"))
    with torch.no_grad():
        for method, name in (("euler", "euler"), ("heun2", "heun")):
            # SiT's num_steps counts grid points: 11 points = 10 steps.
            states = sampler.sample_ode(sampling_method=method, num_steps=11)(z2, model.forward_with_cfg, y=y2, cfg_scale=cfg)
            write_safetensors("samplers/sit_%s10_cfg4.safetensors" % name,
                              {"z": z, "y": y, "x_t": torch.stack([first_half(s) for s in states])})
        for method, name in (("Euler", "sde_euler"), ("Heun", "sde_heun")):
            rec = Recorder(integrators.th, "randn")
            # sample.py's SDE defaults: diffusion form sigma, norm 1, last step Mean of 0.04.
            # num_steps 8 = 7 stochastic steps to t = 0.96 and the last step.
            states = sampler.sample_sde(sampling_method=method, diffusion_form="sigma", diffusion_norm=1.0,
                                        last_step="Mean", last_step_size=0.04, num_steps=8)(
                z2, model.forward_with_cfg, y=y2, cfg_scale=cfg)
            integrators.th.randn = rec.original
            noise = torch.stack([first_half(w) for w in rec.draws])
            write_safetensors("samplers/sit_%s7_cfg4.safetensors" % name,
                              {"z": z, "y": y, "noise": noise, "x_t": torch.stack([z] + [first_half(s) for s in states])})


def main():
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    install_standins()
    import dit_models
    import sit_models
    import diffusion
    import transport
    dit_cases(dit_models, diffusion)
    sit_cases(sit_models, transport)
    print("sampler fixtures written")


if __name__ == "__main__":
    main()
