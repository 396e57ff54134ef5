"""Tiny end-to-end runs in-process: the run folder, its rows, resume, the saved pipelines."""
import hashlib
import json

import numpy as np
import pytest
import torch

import loops.artifacts as artifacts
from autophagy.rundir import RunDir
from loops.run import run_loop
from loops.regimes import REGIMES

ROW_KEYS = {"generation", "regime", "seed", "fid", "kid", "precision", "recall", "density", "coverage", "feature_space",
            "n_reference", "n_generated", "n_train_real", "n_train_synthetic", "train_seconds", "sample_seconds", "health_seconds",
            "classes_covered", "class_histogram", "k", "num_processes", "memorization", "sampling_dtype", "mixed_precision",
            "ema_decay_effective", "cost_train_images", "cost_sample_nfe", "evaluated_on", "feature_id"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from autophagy.config import make_config
    cfg = make_config("micro", regime="fully-synthetic", generations=3)
    out = tmp_path_factory.mktemp("runs") / "fs"
    run_loop(cfg, out)
    return cfg, out


def test_run_folder_is_complete(finished_run):
    cfg, out = finished_run
    assert json.loads((out / "config.json").read_text())["regime"] == "fully-synthetic"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert np.isfinite([r[k] for k in ("fid", "precision", "recall", "density", "coverage")]).all()
        assert r["n_generated"] == cfg.n_synthetic and r["n_reference"] == cfg.n_reference
        assert r["feature_space"] == "lenet" and r["num_processes"] == 1
        assert r["ema_decay_effective"] == cfg.ema_decay and "plain_fid" not in r  # plain sampler: no plain_*
    assert rows[0]["n_train_real"] == cfg.n_real and rows[0]["n_train_synthetic"] == 0
    assert rows[1]["n_train_real"] == 0 and rows[1]["n_train_synthetic"] == cfg.n_synthetic
    for t in range(3):
        gen = out / f"gen_{t:03d}"
        assert (gen / "DONE").exists() and (gen / "grid.png").stat().st_size > 100
        assert not (gen / "work").exists()  # checkpoints and chunks are cleaned once DONE
        with np.load(gen / "samples.npz") as z:
            assert z["images"].shape == (cfg.n_synthetic, 1, cfg.resolution, cfg.resolution)
            assert z["images"].dtype == np.uint8
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["kind"] == "real-baseline" and baseline["precision"] > 0.5 and baseline["lenet_accuracy"] > 0.5


def test_rerun_does_no_training(finished_run, monkeypatch):
    cfg, out = finished_run
    before = (out / "metrics.jsonl").read_bytes()

    def no_training(*a, **k):
        raise AssertionError("a finished run must not train again")
    monkeypatch.setattr(artifacts, "train_diffusion", no_training)
    run_loop(cfg, out)
    assert (out / "metrics.jsonl").read_bytes() == before


def test_saved_generation_loads_as_a_diffusers_pipeline(finished_run):
    """The preset's model is class-conditional on MNIST: the pipeline loads it, and its scheduler and UNet
    sample with class labels (DDIMPipeline's own __call__ passes none; README "Run folder")."""
    from diffusers import DDIMPipeline, DDPMPipeline
    cfg, out = finished_run
    pipe = DDIMPipeline.from_pretrained(str(out / "gen_002" / "model"))
    assert pipe.unet.config.num_class_embeds == 11  # ten classes and the null class
    x = torch.randn(2, 1, cfg.resolution, cfg.resolution, generator=torch.Generator().manual_seed(0))
    pipe.scheduler.set_timesteps(3)
    for t in pipe.scheduler.timesteps:
        x = pipe.scheduler.step(pipe.unet(x, t, class_labels=torch.tensor([3, 7])).sample, t, x).prev_sample
    assert x.shape == (2, 1, cfg.resolution, cfg.resolution) and torch.isfinite(x).all()
    ddpm = DDPMPipeline.from_pretrained(str(out / "gen_002" / "model"))
    assert ddpm.unet.config.sample_size == cfg.resolution


def test_an_unconditional_generation_samples_with_the_plain_pipeline(micro, tmp_path):
    from diffusers import DDIMPipeline
    cfg = micro(generations=1, conditioning="none")
    run_loop(cfg, tmp_path / "run")
    pipe = DDIMPipeline.from_pretrained(str(tmp_path / "run" / "gen_000" / "model"))
    assert pipe.unet.config.num_class_embeds is None
    images = pipe(batch_size=2, num_inference_steps=3, output_type="np").images
    assert images.shape == (2, cfg.resolution, cfg.resolution, 1) and np.isfinite(images).all()


def test_conditioning_auto_follows_the_labels(micro):
    from autophagy.models import build_unet
    cfg = micro()
    assert build_unet(cfg, 1, num_classes=10).config.num_class_embeds == 11
    assert build_unet(cfg, 1, num_classes=0).config.num_class_embeds is None   # unlabeled data: unconditional
    assert build_unet(micro(conditioning="none"), 1, num_classes=10).config.num_class_embeds is None
    assert build_unet(micro(conditioning="none", sampling_bias=0.5), 1, num_classes=10).config.num_class_embeds == 11


@pytest.mark.parametrize("regime", [r for r in REGIMES if r != "fully-synthetic"])
def test_every_regime_runs_three_generations(micro, tmp_path, regime):
    cfg = micro(regime=regime, generations=3, n_real_fresh=50)
    run_loop(cfg, tmp_path / regime)
    rows = [json.loads(line) for line in (tmp_path / regime / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    synth = [r["n_train_synthetic"] for r in rows]
    real = [r["n_train_real"] for r in rows]
    n = cfg.n_synthetic
    expected = {"synthetic-augmentation": ([200, 200, 200], [0, n, n]), "sims": ([200, 200, 200], [0, n, n]),
                "neon": ([200, 200, 200], [0, n, n]), "curated": ([200, 200, 200], [0, n // 2, n // 2]),
                "fresh-data": ([200, 50, 50], [0, n, n]), "accumulate": ([200, 200, 200], [0, n, 2 * n]),
                "accumulate-growing": ([200, 200, 200], [0, n, 2 * n]),
                "synthetic-augmentation-growing": ([200, 200, 200], [0, n, n]),
                "self-correcting": ([200, 200, 200], [0, n, n])}.get(regime)
    if regime == "accumulate-subsample":  # the fixed budget n_real + n_synthetic, drawn from R_0 and S_0..S_{t-1}
        assert [a + b for a, b in zip(real, synth)] == [200, 300, 300] and synth[2] > 0
    elif regime == "curated-balanced":  # the top half of each predicted class: about half of S_{t-1}
        assert real == [200, 200, 200] and all(abs(s - n // 2) <= 10 for s in synth[1:])
        assert [sum(r["curation_kept_histogram"]) for r in rows[1:]] == synth[1:]
    else:
        assert (real, synth) == expected
    if regime == "curated":
        assert rows[1]["curation_kept_fraction"] == cfg.curation_keep and sum(rows[1]["curation_kept_histogram"]) == n // 2
    if regime == "sims":
        assert (tmp_path / regime / "gen_002" / "aux_model" / "unet").is_dir()
        assert all(r["sampler"] == "sims" and r["guidance_weight"] == cfg.guidance_weight for r in rows)
        for t, r in enumerate(rows):  # the unguided health draws' class mix, with or without a target
            with np.load(tmp_path / regime / f"gen_{t:03d}" / "plain_samples.npz") as z:
                assert sum(r["plain_class_histogram"]) == len(z["images"]) and r["plain_classes_covered"] > 0
    if regime in ("accumulate-growing", "synthetic-augmentation-growing"):  # 30 steps, then 45 and 60 as |D_t| would grow
        assert [r.get("train_steps", cfg.train_steps) for r in rows] == [30, 45, 60]
        assert [r["cost_train_images"] for r in rows] == [s * cfg.batch_size for s in (30, 45, 60)]


def test_sampling_bias_trains_a_class_conditional_model(micro, tmp_path):
    from diffusers import UNet2DModel
    run_loop(micro(regime="synthetic-augmentation", generations=2, sampling_bias=0.5), tmp_path / "biased")
    unet = UNet2DModel.from_pretrained(str(tmp_path / "biased" / "gen_001" / "model"), subfolder="unet")
    assert unet.config.num_class_embeds == 11
    with np.load(tmp_path / "biased" / "gen_000" / "samples.npz") as z:
        assert set(z["labels"]) <= set(range(10)) and len(set(z["labels"])) > 5  # classes drawn uniformly


def test_sims_sampler_composes_with_any_regime(micro, tmp_path):
    run_loop(micro(regime="fresh-data", sampler="sims", generations=2), tmp_path / "fresh-sims")
    assert (tmp_path / "fresh-sims" / "gen_001" / "aux_model").is_dir()


def test_rescore_recomputes_every_row_from_the_samples(finished_run):
    """Corrupted metric values come back from the saved samples and the cached extractor."""
    from autophagy.rundir import RunDir
    from loops.rescore import rescore_run
    cfg, out = finished_run
    rd = RunDir(out)
    before = rd.read_rows()
    rd.write_rows([{**r, "fid": -1.0, "precision": -1.0} for r in before])
    (out / "baseline.json").unlink()
    rescore_run(out, log=lambda *_: None)
    assert (out / "baseline.json").exists()
    after = RunDir(out).read_rows()
    assert len(after) == len(before) == 3
    for a, b in zip(after, before):
        for key in ("fid", "precision", "recall", "density", "coverage", "class_histogram", "train_seconds"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
        assert a["feature_id"] == b["feature_id"]


def test_ema_decay_is_the_decay_applied(micro, tmp_path):
    """Two --ema-decay values give different saved weights; the decay applied at the last step is the
    one configured (diffusers' own (1+s)/(10+s) ramp would give 0.70 after 30 steps, not 0.9)."""
    from diffusers import UNet2DModel
    weights = []
    for decay in (0.5, 0.9):
        out = tmp_path / f"ema{decay}"
        run_loop(micro(generations=1, ema_decay=decay), out)
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert row["ema_decay_effective"] == decay
        unet = UNet2DModel.from_pretrained(str(out / "gen_000" / "model"), subfolder="unet")
        weights.append(next(unet.parameters()).detach().clone())
    assert not np.allclose(weights[0].numpy(), weights[1].numpy())


def test_ema_warmup_copies_the_weights_first(micro):
    from autophagy.training import make_ema
    cfg = micro(ema_decay=0.99, ema_warmup_steps=5)
    p = torch.nn.Parameter(torch.zeros(3))
    ema = make_ema([p], cfg)
    for step in range(1, 10):
        p.data.fill_(float(step))
        ema.step([p])
        expected = 0.0 if step <= 6 else 0.99  # copies through the warm-up (EMAModel counts update_after_step + 1)
        assert ema.cur_decay_value == expected, step


def test_tensorboard_tracker_gets_every_generation(micro, tmp_path):
    """--log-with tensorboard: each generation's metrics and its sample grid, through accelerate's tracker."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "tracked"
    run_loop(micro(generations=2, log_with="tensorboard"), out)
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("fid")] == [0, 1]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert acc.Scalars("fid")[1].value == pytest.approx(rows[1]["fid"], rel=1e-5)
    assert [e.step for e in acc.Images("samples")] == [0, 1]


def test_a_run_extends_when_its_settings_mean_the_same_on_its_data(micro, tmp_path):
    """A folder made with `--features lenet` extends under the default `--features auto` (lenet on
    labelled data), and refuses `--features autoencoder`, naming the field."""
    from autophagy.config import ConfigError
    out = tmp_path / "run"
    run_loop(micro(generations=1, features="lenet"), out)
    with pytest.raises(ConfigError, match=r"features: 'lenet' -> 'autoencoder'"):
        run_loop(micro(generations=2, features="autoencoder"), out)
    run_loop(micro(generations=2, features="auto"), out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1] and {r["feature_space"] for r in rows} == {"lenet"}


def test_a_field_neither_the_regime_nor_its_sampler_reads_does_not_block_a_resume(micro, tmp_path):
    """A preset that later tunes Neon's w or SIMS's ω does not orphan a synthetic-augmentation folder; the
    same change in a run whose sampler reads it is refused, naming the field."""
    from autophagy.config import ConfigError
    out = tmp_path / "run"
    run_loop(micro(regime="synthetic-augmentation", generations=1, neon_weight=0.5, guidance_weight=2.0), out)
    run_loop(micro(regime="synthetic-augmentation", generations=2, neon_weight=4.0, guidance_weight=1.0), out)
    assert [r["generation"] for r in RunDir(out).read_rows()] == [0, 1]
    sims = tmp_path / "sims"
    run_loop(micro(regime="sims", generations=1, guidance_weight=2.0, neon_weight=0.5), sims)
    run_loop(micro(regime="sims", generations=1, guidance_weight=2.0, neon_weight=4.0), sims)  # Neon's: unread
    with pytest.raises(ConfigError, match=r"guidance_weight: 2.0 -> 1.0"):
        run_loop(micro(regime="sims", generations=2, guidance_weight=1.0), sims)


def test_n_eval_scores_every_run_on_as_many_images_whatever_s_t_holds(micro, tmp_path):
    """--n-eval 100 with an S_t of 40: the 40 are the first of a draw of 100 (the very images of a run with
    S_t = 100), the next generation trains on the 40, and the scores are those of the 100, also after rescore."""
    import dataclasses
    from loops.regimes import as_read
    from loops.rescore import rescore_run
    small = RunDir(run_loop(micro(n_synthetic=40, n_eval=100), tmp_path / "small").root)
    full = RunDir(run_loop(micro(n_synthetic=100), tmp_path / "full").root)
    small_rows, full_rows = small.read_rows(), full.read_rows()
    assert [r["n_generated"] for r in small_rows] == [100, 100]
    assert [r["n_train_synthetic"] for r in small_rows] == [0, 40]
    s0, _ = small.load_samples(0)
    f0, _ = full.load_samples(0)
    assert len(s0) == 40 and np.array_equal(s0, f0[:40])          # S_t is the head of the scored draw
    assert small_rows[0]["fid"] == full_rows[0]["fid"]             # same θ_0, the same 100 images scored
    rescore_run(small.root, log=lambda *_: None)
    assert small.read_rows()[0]["fid"] == pytest.approx(small_rows[0]["fid"], rel=1e-9)
    # a folder from before the field (n_eval 0: all of S_t) holds the run of n_eval = n_synthetic
    cfg = micro(n_synthetic=100)
    assert as_read(dataclasses.replace(cfg, n_eval=0)) == as_read(dataclasses.replace(cfg, n_eval=100))
    assert as_read(dataclasses.replace(cfg, n_eval=0)) != as_read(dataclasses.replace(cfg, n_eval=200))


def test_a_negative_n_eval_is_refused(capsys):
    from tests.conftest import refused
    code, err = refused(capsys, "run", "--regime", "fully-synthetic", "--generations", "1", "--n-eval", "-1",
                        "--preset", "micro")
    assert code == 2 and "--n-eval" in err and "-1" in err


def test_a_loop_budget_trains_later_generations_and_leaves_theta_0_shared(micro, tmp_path, monkeypatch):
    """--loop-train-steps: θ_0 trains --train-steps, θ_1 … from scratch for the loop budget, and generation 0
    is keyed as a run without it (a sweep of loop budgets shares one θ_0); below 0 is refused."""
    from autophagy.config import ConfigError, validate
    from loops.generation_zero import base_key, generation_zero_key
    from loops.protocols import plan_identity
    from loops.regimes import as_read
    trained = []
    real_train = artifacts.train_diffusion

    def recording(model, images, labels, cfg, train_steps, *args, **kwargs):
        trained.append((train_steps, len(images)))
        return real_train(model, images, labels, cfg, train_steps, *args, **kwargs)
    monkeypatch.setattr(artifacts, "train_diffusion", recording)
    cfg = micro(regime="synthetic-augmentation", generations=3, loop_train_steps=12)
    run_loop(cfg, tmp_path / "budget")
    assert trained == [(30, 200), (12, 300), (12, 300)]
    rows = [json.loads(line) for line in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    assert [r["cost_train_images"] for r in rows] == [30 * 16, 12 * 16, 12 * 16]
    plain = micro(regime="synthetic-augmentation", generations=3)
    assert generation_zero_key(cfg) == generation_zero_key(plain) and base_key(cfg) == base_key(plain)
    # the field at its default leaves a plan's identity what it was before the field; set, it moves it
    assert plan_identity([("a", plain)]) != plan_identity([("a", cfg)])
    before_the_field = {k: v for k, v in json.loads(as_read(plain).to_json()).items() if k != "loop_train_steps"}
    assert plan_identity([("a", plain)]) == hashlib.sha256(json.dumps([["a", before_the_field]], sort_keys=True).encode()).hexdigest()
    with pytest.raises(ConfigError, match="--loop-train-steps.*-1"):
        validate(micro(loop_train_steps=-1))


def test_init_previous_fine_tunes_its_epochs_over_d_t_at_its_own_rate(micro, tmp_path, monkeypatch):
    from autophagy.config import ConfigError, validate
    from loops.generation_zero import generation_zero_key
    trained = []
    real_train = artifacts.train_diffusion

    def recording(model, images, labels, cfg, train_steps, *args, **kwargs):
        trained.append((cfg.learning_rate, train_steps, len(images)))
        return real_train(model, images, labels, cfg, train_steps, *args, **kwargs)
    monkeypatch.setattr(artifacts, "train_diffusion", recording)
    cfg = micro(regime="synthetic-augmentation", generations=3, init="previous", finetune_epochs=1.5,
                finetune_learning_rate=1e-4)
    run_loop(cfg, tmp_path / "gillman")
    # generation 0 from scratch (30 steps at the base's rate); then 1.5 passes over |D_t| = 200 + 100 in batches of 16
    assert trained == [(cfg.learning_rate, 30, 200), (1e-4, 29, 300), (1e-4, 29, 300)]
    rows = [json.loads(line) for line in (tmp_path / "gillman" / "metrics.jsonl").read_text().splitlines()]
    assert [r["cost_train_images"] for r in rows] == [30 * 16, 29 * 16, 29 * 16]
    # θ_0 is the same whatever later generations do, so sweeps share it
    assert generation_zero_key(cfg) == generation_zero_key(micro(regime="synthetic-augmentation", generations=3))
    with pytest.raises(ConfigError, match="--finetune-epochs: 1.0 needs --init previous"):
        validate(micro(finetune_epochs=1.0))
