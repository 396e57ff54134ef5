"""The SIMS and classifier-free guided samplers do exactly what their formulas say."""
import numpy as np
import pytest
import torch

from autophagy.models import build_unet
from autophagy.sampling import GuidedDenoiser, sample_batch


def two_models(cfg, channels=1, num_classes=0):
    torch.manual_seed(0)
    base = build_unet(cfg, channels, num_classes).eval()
    torch.manual_seed(1)
    aux = build_unet(cfg, channels, num_classes).eval()
    return base, aux


def test_sims_with_zero_weight_reproduces_plain_sampling(micro):
    cfg = micro()
    base, aux = two_models(cfg)
    plain, _ = sample_batch(GuidedDenoiser(base), cfg, 6, torch.Generator().manual_seed(3))
    guided, _ = sample_batch(GuidedDenoiser(base, aux, guidance_weight=0.0), cfg, 6, torch.Generator().manual_seed(3))
    assert np.array_equal(plain, guided)
    other, _ = sample_batch(GuidedDenoiser(base, aux, guidance_weight=1.0), cfg, 6, torch.Generator().manual_seed(3))
    assert not np.array_equal(plain, other)


@pytest.mark.parametrize("omega", [0.5, 2.0])
def test_sims_prediction_is_the_extrapolation(micro, omega):
    cfg = micro()
    base, aux = two_models(cfg)
    x, t = torch.randn(4, 1, cfg.resolution, cfg.resolution), torch.tensor(500)
    with torch.no_grad():
        e_base, e_aux = base(x, t).sample, aux(x, t).sample
        guided = GuidedDenoiser(base, aux, guidance_weight=omega)(x, t)
    assert not torch.allclose(e_base, e_aux)
    torch.testing.assert_close(guided, (1 + omega) * e_base - omega * e_aux)


def test_sims_sampler_applies_formula_at_every_step(micro):
    """Record the network outputs inside a full DDIM run and check the combination at each step."""
    cfg = micro()
    base, aux = two_models(cfg)
    seen = []

    class Recording(GuidedDenoiser):
        def __call__(self, x, t, labels=None):
            out = super().__call__(x, t, labels)
            seen.append((base(x, t).sample, aux(x, t).sample, out))
            return out
    sample_batch(Recording(base, aux, guidance_weight=1.5), cfg, 3, torch.Generator().manual_seed(0))
    assert len(seen) == cfg.sampling_steps
    for e_base, e_aux, out in seen:
        torch.testing.assert_close(out, 2.5 * e_base - 1.5 * e_aux)


def test_classifier_free_guidance_formula(micro):
    cfg = micro(sampling_bias=0.5)  # λ = 0.5 -> w = 1
    torch.manual_seed(0)
    model = build_unet(cfg, 1, num_classes=10).eval()
    assert model.config.num_class_embeds == 11  # ten classes and the null class
    x, t, labels = torch.randn(4, 1, cfg.resolution, cfg.resolution), torch.tensor(300), torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        cond = model(x, t, class_labels=labels).sample
        uncond = model(x, t, class_labels=torch.full_like(labels, 10)).sample
        out = GuidedDenoiser(model, class_guidance_weight=1.0)(x, t, labels)
    torch.testing.assert_close(out, 2 * cond - uncond, rtol=1e-4, atol=1e-5)


def test_sampling_is_reproducible_from_the_seed(micro):
    cfg = micro()
    base, _ = two_models(cfg)
    a, _ = sample_batch(GuidedDenoiser(base), cfg, 5, torch.Generator().manual_seed(11))
    b, _ = sample_batch(GuidedDenoiser(base), cfg, 5, torch.Generator().manual_seed(11))
    assert a.dtype == np.uint8 and a.shape == (5, 1, cfg.resolution, cfg.resolution)
    assert np.array_equal(a, b)
