"""Neon's merge, one network per step, and the compute accounting of a micro run counted by hand."""
import json

import pytest
import torch

from autophagy.models import build_unet
from autophagy.sampling import GuidedDenoiser, sample_batch
from loops.run import run_loop
from loops.samplers import neon_merge


def _two_models(cfg):
    torch.manual_seed(0)
    base = build_unet(cfg, 1).eval()
    torch.manual_seed(1)
    aux = build_unet(cfg, 1).eval()
    return base, aux


def test_neon_merge_formula_parameter_by_parameter(micro):
    cfg = micro()
    base, aux = _two_models(cfg)
    merged = neon_merge(base, aux, 0.7)
    aux_params = dict(aux.named_parameters())
    for name, p in merged.named_parameters():
        assert torch.allclose(p, 1.7 * dict(base.named_parameters())[name] - 0.7 * aux_params[name], atol=1e-6), name
    assert merged is not base and not torch.equal(next(merged.parameters()), next(base.parameters()))


def test_neon_with_zero_weight_is_the_base(micro):
    cfg = micro()
    base, aux = _two_models(cfg)
    merged = neon_merge(base, aux, 0.0)
    a, _ = sample_batch(GuidedDenoiser(base), cfg, 4, torch.Generator().manual_seed(5))
    b, _ = sample_batch(GuidedDenoiser(merged), cfg, 4, torch.Generator().manual_seed(5))
    assert (a == b).all()


def test_neon_evaluates_one_network_per_step(micro, tmp_path, monkeypatch):
    import loops.generation as generation
    calls = []
    real = generation.sample_chunks

    def counting(denoiser, cfg, n_images, seed_ints, purpose="sample", *a, **k):
        if purpose == "sample":
            calls.append(denoiser.networks_per_step)
            original = denoiser.base.forward
            denoiser.base.forward = lambda *x, **y: (calls.append("forward"), original(*x, **y))[1]
        return real(denoiser, cfg, n_images, seed_ints, purpose, *a, **k)
    monkeypatch.setattr(generation, "sample_chunks", counting)
    cfg = micro(regime="neon", generations=1)
    run_loop(cfg, tmp_path / "neon")
    assert calls[0] == 1
    n_chunks = cfg.n_synthetic // cfg.sample_batch_size
    assert calls.count("forward") == cfg.sampling_steps * n_chunks  # one network evaluation per step and chunk
    assert (tmp_path / "neon" / "gen_000" / "merged_model" / "unet").is_dir()


def test_cost_fields_add_up_by_hand(micro, tmp_path):
    cfg = micro(regime="sims", generations=2)
    run_loop(cfg, tmp_path / "sims")
    run_loop(micro(regime="synthetic-augmentation", generations=2), tmp_path / "plain")
    sims = [json.loads(line) for line in (tmp_path / "sims" / "metrics.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    for row in sims:
        # base 30 steps x 16 + aux 10 steps x 16 images; S_t: 100 images x 4 steps x 2 networks + aux 50 x 4 x 1
        assert row["cost_train_images"] == 30 * 16 + 10 * 16
        assert row["cost_sample_nfe"] == 100 * 4 * 2 + 50 * 4
    for row in plain:
        assert row["cost_train_images"] == 30 * 16 and row["cost_sample_nfe"] == 100 * 4
        assert "plain_fid" not in row and row["health_seconds"] == 0.0   # no unguided health draw to time
    assert all("plain_fid" in r and "plain_coverage" in r and "plain_precision" in r for r in sims)
    assert all(r["health_seconds"] > 0.0 for r in sims)   # the health draw's time, apart from S_t's


def test_rescore_measures_the_model_health_again_or_drops_it(micro, tmp_path):
    """A guided run keeps its unguided health draws; rescore recomputes plain_* from them, and a run
    without them loses its plain_* instead of keeping numbers measured in another network."""
    from autophagy.rundir import RunDir
    from loops.rescore import rescore_run
    cfg = micro(regime="sims", generations=1)
    rd = RunDir(run_loop(cfg, tmp_path / "sims").root)
    assert rd.load_health_samples(0).shape[0] == cfg.n_reference
    before = rd.read_rows()
    rd.write_rows([{**r, "plain_fid": -1.0, "plain_recall": -1.0} for r in before])
    rescore_run(rd.root, log=lambda *_: None)
    after = rd.read_rows()[0]
    assert after["plain_fid"] == pytest.approx(before[0]["plain_fid"], rel=1e-6)
    assert after["plain_recall"] == pytest.approx(before[0]["plain_recall"], rel=1e-6)
    rd.health_samples_path(0).unlink()
    rescore_run(rd.root, log=lambda *_: None)
    assert not any(k.startswith("plain_") for k in rd.read_rows()[0])


def test_neon_defaults_keep_its_budget_at_its_papers_share(micro, tmp_path):
    import dataclasses
    from autophagy.config import RunConfig, make_config
    from loops.samplers import neon_budget
    cfg = make_config("cpu", regime="neon")
    budget = neon_budget(cfg)
    share = budget["train_steps"] * cfg.batch_size / (cfg.train_steps * cfg.batch_size)
    assert 0.0175 <= share <= 0.05                          # the tuned preset stays at the 5 % ceiling
    papers = neon_budget(dataclasses.replace(cfg, neon_aux_train_steps=RunConfig.neon_aux_train_steps))
    assert 0.0175 <= papers["train_steps"] / cfg.train_steps <= 0.02   # the field's own default: the paper's 1.75 %
    assert budget["n_images"] == 120 and budget["learning_rate"] == cfg.learning_rate / 10
    assert budget["warmup_steps"] > budget["train_steps"]   # EDM's ramp is still rising at the end
    small = micro(regime="neon", generations=1)
    rd = run_loop(small, tmp_path / "neon")
    row = json.loads(rd.metrics_path.read_text().splitlines()[0])
    steps = neon_budget(small)["train_steps"]
    assert row["cost_train_images"] == (small.train_steps + steps) * small.batch_size
    assert row["uses"]["neon_weight"] == small.neon_weight and "guidance_weight" not in row["uses"]
