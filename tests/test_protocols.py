"""Protocols and verdicts: each outcome from a table whose answer is known, identities, the smoke run."""
import json

import numpy as np
import pandas as pd
import pytest

from autophagy.cli import main
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, decide, describe_test, region_verdict
from autophagy.config import ConfigError
from loops.protocols import HERE, claim_folder_check, load_protocol, plan, plan_identity, shipped, with_method
from loops.regimes import validate_run
from tests.conftest import run_cli


def _rows(fid_by_seed: dict) -> pd.DataFrame:
    """Rows of experiments 'a' and 'b': {experiment: [(fid gen 0, fid gen 2) per seed]}."""
    rows = []
    for experiment, seeds in fid_by_seed.items():
        for seed, (first, last) in enumerate(seeds):
            rows += [{"experiment": experiment, "seed": seed, "generation": 0, "fid": first},
                     {"experiment": experiment, "seed": seed, "generation": 1, "fid": (first + last) / 2},
                     {"experiment": experiment, "seed": seed, "generation": 2, "fid": last}]
    return pd.DataFrame(rows)


CHANGE = [{"kind": "change", "experiment": "a", "metric": "fid", "region": {"above": 1.0}}]
COMPARE = [{"kind": "compare", "experiment": "a", "baseline": "b", "metric": "fid", "region": {"below": 0.0}}]


def test_each_outcome_from_a_table_whose_answer_is_known():
    rising = _rows({"a": [(10, 20), (10, 22), (12, 25)]})        # ratios 2.0, 2.2, 2.08: above 1
    verdict, (result,) = decide(rising, CHANGE, generations=3)
    assert verdict == REPRODUCED and result["n_seeds"] == 3
    assert result["per_seed"] == {"0": 2.0, "1": 2.2, "2": 25 / 12}
    assert result["mean"] == pytest.approx(np.mean([2.0, 2.2, 25 / 12]))
    falling = _rows({"a": [(20, 10), (22, 10), (25, 12)]})
    assert decide(falling, CHANGE, 3)[0] == NOT_REPRODUCED
    noisy = _rows({"a": [(10, 14), (10, 7), (10, 11)]})           # ratios 1.4, 0.7, 1.1: the interval holds 1
    assert decide(noisy, CHANGE, 3)[0] == INCONCLUSIVE
    # a paired comparison on shared seeds, and the verdict of all tests together
    paired = _rows({"a": [(10, 13), (10, 14), (10, 13.5)], "b": [(10, 20), (10, 24), (10, 21)]})
    verdict, (result,) = decide(paired, COMPARE, 3)
    assert verdict == REPRODUCED and result["per_seed"] == {"0": -7.0, "1": -10.0, "2": -7.5}
    assert decide(paired, COMPARE + CHANGE, 3)[0] == REPRODUCED   # a: 1.3, 1.4, 1.35 > 1 too
    # model health of a guided method against an unguided control: the control's own samples are plain draws
    health = paired.assign(plain_fid=np.where(paired["experiment"] == "a", paired["fid"] + 1.0, np.nan))
    _, (result,) = decide(health, [{**COMPARE[0], "metric": "plain_fid"}], 3)
    assert result["per_seed"] == {"0": -6.0, "1": -9.0, "2": -6.5}
    assert decide(_rows({"a": [(10, 12), (10, 13), (10, 11)]}), CHANGE, 3)[0] == INCONCLUSIVE  # [0.95, 1.45]
    assert decide(paired, COMPARE + [{**CHANGE[0], "region": {"below": 1.0}}], 3)[0] == NOT_REPRODUCED


def test_equivalence_regions_and_too_few_seeds():
    assert region_verdict(0.9, 1.1, {"within": [0.8, 1.25]}) == REPRODUCED
    assert region_verdict(1.3, 1.9, {"within": [0.8, 1.25]}) == NOT_REPRODUCED
    assert region_verdict(1.0, 1.9, {"within": [0.8, 1.25]}) == INCONCLUSIVE
    one_seed = _rows({"a": [(10, 30)]})
    assert decide(one_seed, CHANGE, 3)[0] == INCONCLUSIVE          # no interval from one seed


def test_every_shipped_protocol_is_published_and_plans_valid_runs():
    assert len(shipped()) >= 10
    for name in shipped():
        protocol = load_protocol(name)
        runs, experiment_of, smoke = plan(protocol)
        assert not smoke and len(runs) == len(protocol.points) * len(protocol.seeds)
        assert set(experiment_of.values()) == set(protocol.points)
        for _, cfg in runs:
            validate_run(cfg)
    assert plan(load_protocol("sims-prophylaxis"), "micro")[2]              # another preset: a smoke run
    assert plan(load_protocol("sims-prophylaxis"), None, {"guidance_weight": 1.0})[2]


def test_identity_changes_with_any_change_and_a_changed_protocol_keeps_no_old_version(tmp_path):
    original = json.loads((HERE / "mad-fully-synthetic.json").read_text())
    protocol = load_protocol("mad-fully-synthetic@1")
    for key, value in [("claim", original["claim"] + " "), ("seeds", [0, 1]), ("generations", 11),
                       ("tests", original["tests"][:1])]:
        changed = tmp_path / f"changed-{key}.json"
        changed.write_text(json.dumps({**original, key: value}))
        with pytest.raises(ConfigError, match="differs from the published mad-fully-synthetic@1"):
            load_protocol(str(changed))
        newer = tmp_path / f"newer-{key}.json"
        newer.write_text(json.dumps({**original, key: value, "version": 2}))
        assert load_protocol(str(newer)).identity != protocol.identity     # a new version is accepted
    with pytest.raises(ConfigError, match="mad-fully-synthetic@7 is not shipped"):
        load_protocol("mad-fully-synthetic@7")


def test_a_folder_holding_another_identity_is_refused(tmp_path):
    protocol = load_protocol("sims-prophylaxis")
    record = claim_folder_check(tmp_path, protocol, smoke=False)
    record.write_text(json.dumps({"identity": "0" * 64, "smoke": False}))
    with pytest.raises(ConfigError, match=f"holds {protocol.id} with identity 000000000000"):
        claim_folder_check(tmp_path, protocol, smoke=False)
    assert claim_folder_check(tmp_path, protocol, smoke=True).name == f"protocol-{protocol.id}-smoke.json"


def test_a_method_takes_the_method_point(tmp_path):
    protocol = with_method(load_protocol("sims-prophylaxis"), "neon")
    assert protocol.id == load_protocol("sims-prophylaxis").id + "+neon" and protocol.points["neon"]["regime"] == "neon"
    with pytest.raises(ConfigError, match="neither a regime nor a sampler"):
        with_method(load_protocol("sims-prophylaxis"), "my-sampler")
    with pytest.raises(ConfigError, match="has no method point"):
        with_method(load_protocol("mad-fully-synthetic"), "neon")


def test_a_method_runs_under_its_own_name_beside_the_protocols_points():
    protocol = with_method(load_protocol("neon-loop"), "sims")
    runs, experiment_of, smoke = plan(protocol)
    assert not smoke and sorted(experiment_of) == ["sims-s0", "sims-s1", "sims-s2", "synthetic-augmentation-s0",
                                                   "synthetic-augmentation-s1", "synthetic-augmentation-s2"]
    assert experiment_of["sims-s1"] == "sims" and dict(runs)["sims-s1"].regime == "sims"
    assert [t["experiment"] for t in protocol.tests] == ["sims", "sims"] and protocol.method_point == "sims"
    assert sorted(plan(load_protocol("neon-loop"))[1])[:3] == ["neon-tuned-s0", "neon-tuned-s1", "neon-tuned-s2"]
    with pytest.raises(ConfigError, match="'synthetic-augmentation' is the protocol's point"):
        with_method(load_protocol("neon-loop"), "synthetic-augmentation")
    # the method point's own method again would run the same settings under a second name
    correction = load_protocol("self-correction")
    with pytest.raises(ConfigError, match=f"'self-correcting' is what {correction.id}'s method point 'gamma1-share2'"):
        with_method(correction, "self-correcting")


def test_a_board_entry_pairs_the_method_with_its_control_and_prices_it():
    from analysis.verdicts import board_entry
    rows = []
    for seed in range(3):
        for generation in range(3):
            rows.append({"experiment": "m", "seed": seed, "generation": generation, "fid": 30.0 + seed + generation,
                         "plain_fid": 40.0 + generation, "recall": 0.8, "cost_train_images": 300.0,
                         "cost_sample_nfe": 30.0})
            rows.append({"experiment": "c", "seed": seed, "generation": generation, "fid": 50.0 + 2 * seed,
                         "plain_fid": np.nan, "recall": 0.6 + 0.1 * seed, "cost_train_images": 100.0,
                         "cost_sample_nfe": 10.0 * (1 + generation)})
    entry = board_entry(pd.DataFrame(rows), "m", "c", generation=2)
    assert entry["fid"]["per_seed"] == pytest.approx({"0": -18.0, "1": -19.0, "2": -20.0})
    # model health: the guided method's own samples against the unguided control's (its fid)
    assert entry["plain_fid"]["per_seed"] == pytest.approx({"0": -8.0, "1": -10.0, "2": -12.0})
    assert entry["recall"]["mean"] == pytest.approx(0.1)
    assert entry["cost_train_images"] == pytest.approx(3.0) and entry["cost_sample_nfe"] == pytest.approx(1.5)
    assert entry["seeds"] == ["0", "1", "2"] and entry["control"] == "c"
    # an unguided method (no plain draw of its own): its health is its own FID, against the control's
    unguided = board_entry(pd.DataFrame(rows).assign(plain_fid=np.nan), "m", "c", generation=2)
    assert unguided["plain_fid"]["per_seed"] == pytest.approx(entry["fid"]["per_seed"])
    # at generation 0 every method's model is θ_0: no health figure, the rest as at any generation
    first = board_entry(pd.DataFrame(rows), "m", "c", generation=0)
    assert first["plain_fid"] is None and first["fid"]["per_seed"] == pytest.approx({"0": -20.0, "1": -21.0,
                                                                                       "2": -22.0})


def test_protocol_run_smoke_writes_a_verdict_marked_as_smoke(tmp_path, capsys):
    code, out, err = run_cli("protocol", "run", "mad-fully-synthetic", "--preset", "micro", "--generations", "2",
                             "--seeds", "0,1", "--out", tmp_path / "p", timeout=600)
    assert code == 0, err
    shipped_id = load_protocol("mad-fully-synthetic").id  # the shipped version, whichever it is
    verdict = json.loads((tmp_path / "p" / f"verdict-{shipped_id}-smoke.json").read_text())
    assert verdict["smoke"] is True and verdict["settings"]["preset"] == "micro"
    assert verdict["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    assert [t["n_seeds"] for t in verdict["tests"]] == [2, 2] and verdict["identity"] == load_protocol(
        "mad-fully-synthetic").identity
    assert "AMD" in verdict["machine"] or "CPU" in verdict["machine"]
    assert "(smoke run: not the protocol)" in out
    # the base it was measured on, read from the run folders (micro on MNIST: conditioned on the class)
    assert verdict["base"] == ("class-conditional UNet 8/16, 30 steps, min_snr γ 2 loss, squaredcos_cap_v2 schedule, "
                               "AdamW β2 0.95, unipc 4 steps (trailing), mnist")
    assert (tmp_path / "p" / f"report-{shipped_id}-smoke" / "comparison.csv").is_file()
    # the ledger is generated from the verdict, with its figure beside it (in this process: the same CLI)
    assert main(["protocol", "ledger", str(tmp_path / "p" / f"verdict-{shipped_id}-smoke.json"),
                 "--out", str(tmp_path / "docs" / "claims.md")]) == 0
    ledger = (tmp_path / "docs" / "claims.md").read_text()
    assert shipped_id in ledger and "(smoke run: preset micro, generations 2, seeds [0, 1])" in ledger
    assert "base: class-conditional UNet 8/16, 30 steps" in ledger
    # a verdict older than the field: the ledger reads the base from its runs where they are at hand
    older = tmp_path / "older" / "verdict-mad-fully-synthetic@1-smoke.json"
    older.parent.mkdir()
    older.write_text(json.dumps({k: v for k, v in verdict.items() if k != "base"}))
    assert main(["protocol", "ledger", str(older), "--out", str(tmp_path / "older" / "claims.md")]) == 0
    assert "base: class-conditional UNet 8/16, 30 steps" in (tmp_path / "older" / "claims.md").read_text()
    assert (tmp_path / "docs" / "claims" / f"{shipped_id}-smoke.png").is_file()
    # run again: the same folder, the same identity, nothing retrained
    rows = (tmp_path / "p" / "fully-synthetic-s0" / "metrics.jsonl").read_bytes()
    assert main(["protocol", "run", "mad-fully-synthetic", "--preset", "micro", "--generations", "2",
                 "--seeds", "0,1", "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "fully-synthetic-s0" / "metrics.jsonl").read_bytes() == rows
    assert verdict["generations"] == 2 and verdict["longer_runs"] == {}
    # a shorter run of it is served by the first generation of these runs, and its verdict says which served
    assert main(["protocol", "run", "mad-fully-synthetic", "--preset", "micro", "--generations", "1",
                 "--seeds", "0,1", "--out", str(tmp_path / "p")]) == 0
    shorter = json.loads((tmp_path / "p" / f"verdict-{shipped_id}-smoke.json").read_text())
    assert shorter["generations"] == 1 and shorter["longer_runs"] == {
        str(tmp_path / "p" / f"fully-synthetic-s{seed}"): 2 for seed in (0, 1)}
    assert main(["protocol", "ledger", str(tmp_path / "p" / f"verdict-{shipped_id}-smoke.json"),
                 "--out", str(tmp_path / "docs" / "claims.md")]) == 0
    assert ("generations 0-0 of 2 longer run(s): fully-synthetic-s0, fully-synthetic-s1"
            in (tmp_path / "docs" / "claims.md").read_text())
    assert (tmp_path / "p" / "fully-synthetic-s0" / "metrics.jsonl").read_bytes() == rows
    # an unknown protocol: one line, exit 2
    with pytest.raises(SystemExit) as exit_info:
        main(["protocol", "run", "nope", "--out", str(tmp_path / "p")])
    assert exit_info.value.code == 2 and "'nope' is neither a shipped protocol" in capsys.readouterr().err


def test_the_ledger_ranks_methods_run_under_one_protocol():
    from analysis.verdicts import ledger_markdown

    def verdict(protocol, fid_difference):
        test = {"kind": "compare", "experiment": "sims", "baseline": "synthetic-augmentation", "metric": "fid",
                "region": {"below": 0.0}, "generation": 9, "n_seeds": 3, "per_seed": {"0": 1, "1": 2, "2": 3},
                "mean": fid_difference, "ci95_low": fid_difference - 1, "ci95_high": fid_difference + 1,
                "verdict": REPRODUCED if fid_difference + 1 < 0 else INCONCLUSIVE}
        return {"protocol": protocol, "identity": "ab" * 32, "claim": "c", "source": "s", "verdict": test["verdict"],
                "tests": [test], "machine": "m", "code_version": "v", "smoke": False}
    text = ledger_markdown([verdict("sims-prophylaxis@1", -40.0), verdict("sims-prophylaxis@1+neon", 2.0),
                            verdict("sims-prophylaxis@1+my-sampler", -45.0)])
    board = text.split("## Leaderboards")[1]
    assert board.index("my-sampler") < board.index("(the protocol's own)") < board.index("| neon |")
    assert text.count("| c | s |") == 1   # the claim once: the other methods are on its leaderboard
    assert "base: not recorded (a verdict older than the field" in text  # an old verdict says it has no base
    # with board figures: ranked by the paired sample FID, with health, recall and cost beside it
    def figure(mean):
        return {"mean": mean, "ci95_low": mean - 1, "ci95_high": mean + 1, "n_seeds": 3, "per_seed": {}}

    def with_board(v, fid, cost):
        return {**v, "board": {"method_experiment": "sims", "control": "synthetic-augmentation", "generation": 9,
                               "fid": figure(fid), "plain_fid": figure(fid / 2), "recall": figure(0.1),
                               "cost_train_images": cost, "cost_sample_nfe": 2.0, "seeds": ["0", "1", "2"]}}
    smoke = {**with_board(verdict("sims-prophylaxis@1+fast", -99.0), -99.0, 1.0), "smoke": True}
    board = ledger_markdown([with_board(verdict("sims-prophylaxis@1", -40.0), -40.0, 1.3),
                             with_board(verdict("sims-prophylaxis@1+neon", 2.0), 2.0, 1.05), smoke]
                            ).split("## Leaderboards")[1]
    assert "| 1 | sims (the protocol's own) | -40 [-41, -39] | -20 [-21, -19] | +0.1 [-0.9, 1.1] | ×1.30 | ×2.00 |" in board
    assert "| 2 | neon | +2 [1, 3] |" in board and "fast" not in board  # a smoke run is not on the board
    # a one-generation protocol: the health column is blank, even in a verdict that still holds a figure
    at_zero = [{**v, "board": {**v["board"], "generation": 0}}
               for v in (with_board(verdict("neon-merge@3", -4.0), -4.0, 1.05),
                         with_board(verdict("neon-merge@3+sims", -5.0), -5.0, 1.25))]
    board = ledger_markdown(at_zero).split("## Leaderboards")[1]
    assert board.count("| – (generation 0: θ_0 for every method) |") == 2 and "-2 [-3, -1]" not in board


def test_a_within_row_test_divides_or_subtracts_two_metrics_of_one_row():
    rows = pd.DataFrame([{"experiment": "a", "seed": s, "generation": 0, "target_tv": tv, "plain_target_tv": 0.4,
                          "target_fid": f, "plain_target_fid": 30.0}
                         for s, (tv, f) in enumerate([(0.10, 25.0), (0.12, 27.0), (0.08, 26.0)])])
    ratio = {"kind": "within", "experiment": "a", "metric": "target_tv", "other": "plain_target_tv",
             "region": {"below": 0.5}, "generation": 0}
    difference = {**ratio, "metric": "target_fid", "other": "plain_target_fid", "op": "difference", "region": {"below": 0.0}}
    verdict, (r, d) = decide(rows, [ratio, difference], generations=1)
    assert verdict == REPRODUCED and r["per_seed"] == pytest.approx({"0": 0.25, "1": 0.3, "2": 0.2})
    assert d["per_seed"] == pytest.approx({"0": -5.0, "1": -3.0, "2": -4.0})


def test_a_decay_test_recovers_the_discount_of_a_sum_of_past_errors():
    """FID_t = FID_0 + Σ_{k<=t} ε d^(t-k) with constant ε has increments ε d^t: r = d exactly, per seed."""
    def curve(d, eps, t):
        return 40 + eps * sum(d ** (t - k) for k in range(1, t + 1))
    rows = pd.DataFrame([{"experiment": "fresh", "seed": s, "generation": t, "fid": curve(d, eps, t)}
                         for s, (d, eps) in enumerate([(0.62, 5.0), (0.64, 7.0), (0.66, 6.0)]) for t in range(10)])
    test = {"kind": "decay", "experiment": "fresh", "metric": "fid", "region": {"within": [0.49, 0.79]}}
    verdict, (result,) = decide(rows, [test], generations=10)
    assert verdict == REPRODUCED and result["per_seed"] == pytest.approx({"0": 0.62, "1": 0.64, "2": 0.66})
    assert decide(rows, [{**test, "region": {"within": [0.75, 0.9]}}], 10)[0] == NOT_REPRODUCED
    # a generation missing for one seed: that seed has no estimate, the others stand
    assert decide(rows.drop(index=rows.index[(rows.seed == 2) & (rows.generation == 5)]), [test], 10)[1][0][
        "n_seeds"] == 2


def test_a_slope_test_reads_the_drift_over_its_window_only():
    """A curve that rises 3 a generation until generation 9, then drifts by a seed's own slope plus noise
    that sums to zero against t: the window 10-29 recovers each drift exactly, the whole run does not."""
    zero_against_t = [1.0, -1.0, -1.0, 1.0] * 5  # Σ e_t = 0 and Σ t·e_t = 0 over t = 10 … 29
    def health(drift, t):
        return 10 + 3 * min(t, 9) + (drift * (t - 9) + zero_against_t[t - 10] if t >= 10 else 0)
    rows = pd.DataFrame([{"experiment": "sims", "seed": s, "generation": t, "plain_fid": health(d, t)}
                         for s, d in enumerate([-0.1, 0.05, 0.2]) for t in range(30)])
    test = {"kind": "slope", "experiment": "sims", "metric": "plain_fid", "from_generation": 10,
            "region": {"within": [-0.5, 0.5]}}
    verdict, (result,) = decide(rows, [test], generations=30)
    assert verdict == REPRODUCED and result["per_seed"] == pytest.approx({"0": -0.1, "1": 0.05, "2": 0.2})
    whole = decide(rows, [{**test, "from_generation": 0}], 30)[1][0]  # the early rise counts there
    assert min(whole["per_seed"].values()) > 0.5 and whole["verdict"] != REPRODUCED
    assert "slope of plain_fid of sims a generation, gens 10-29" in describe_test(result)
    # a seed missing a generation of the window has no slope; one missing generation 5 (outside) keeps it
    gap = rows.drop(index=rows.index[(rows.seed == 2) & (rows.generation == 20)])
    assert decide(gap, [test], 30)[1][0]["per_seed"].keys() == {"0", "1"}
    assert decide(rows.drop(index=rows.index[rows.generation == 5]), [test], 30)[1][0]["n_seeds"] == 3


def test_a_peak_test_asks_for_an_interior_maximum(tmp_path):
    def sweep(values_by_seed):
        return pd.DataFrame([{"experiment": e, "seed": s, "generation": 4, "fid": v}
                             for s, values in enumerate(values_by_seed) for e, v in zip(["lo", "mid", "hi"], values)])
    test = {"kind": "peak", "experiments": ["lo", "mid", "hi"], "metric": "fid", "region": {"above": 0.0},
            "generation": 4}
    verdict, (result,) = decide(sweep([(40, 60, 45), (42, 58, 44), (41, 60, 44)]), [test], 5)
    assert verdict == REPRODUCED and result["per_seed"] == {"0": 15.0, "1": 14.0, "2": 16.0}
    assert decide(sweep([(40, 50, 60), (42, 55, 70), (41, 49, 66)]), [test], 5)[0] == NOT_REPRODUCED  # rising
    original = json.loads((HERE / "synthetic-amount-peak.json").read_text())
    two = tmp_path / "two.json"
    two.write_text(json.dumps({**original, "version": 2, "tests": [{**original["tests"][0],
                                                                    "experiments": ["amount-1x", "amount-4x"]}]}))
    with pytest.raises(ConfigError, match="three or more experiments"):
        load_protocol(str(two))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**original, "version": 2, "tests": [{**original["tests"][0], "kind": "median"}]}))
    with pytest.raises(ConfigError, match="kind 'median'"):
        load_protocol(str(unknown))


def test_the_plan_identity_tells_what_ran_when_a_preset_moves(monkeypatch):
    """The protocol's identity is its text; the plan identity follows the settings its runs read: a moved
    Neon setting in the preset (one neon-merge does not pin) changes Neon's plan and not the plan of a
    protocol whose runs never read it."""
    from autophagy import config
    neon, prophylaxis = load_protocol("neon-merge"), load_protocol("sims-prophylaxis")
    before = plan_identity(plan(neon)[0]), plan_identity(plan(prophylaxis)[0])
    monkeypatch.setitem(config.PRESETS, "cpu", {**config.PRESETS["cpu"], "neon_learning_rate": 5e-4})
    after = plan_identity(plan(neon)[0]), plan_identity(plan(prophylaxis)[0])
    assert after[0] != before[0] and after[1] == before[1]
    assert plan_identity(plan(prophylaxis, None, {"guidance_weight": 3.0})[0]) != before[1]


def test_the_ledger_keeps_a_figure_when_its_verdict_is_kept_without_the_report(tmp_path):
    """docs/verdicts holds verdicts without their run folders: regenerating the ledger keeps their figures."""
    runs, kept = tmp_path / "runs", tmp_path / "docs" / "verdicts"
    (runs / "report-x@1").mkdir(parents=True)
    (runs / "report-x@1" / "curves.png").write_bytes(b"png")
    kept.mkdir(parents=True)
    verdict = {"protocol": "x@1", "identity": "ab" * 32, "claim": "c", "source": "s", "verdict": REPRODUCED,
               "tests": [], "machine": "m", "code_version": "v", "smoke": False}
    for folder in (runs, kept):
        (folder / "verdict-x@1.json").write_text(json.dumps(verdict))
    ledger = tmp_path / "docs" / "claims.md"
    assert main(["protocol", "ledger", str(runs / "verdict-x@1.json"), "--out", str(ledger)]) == 0
    assert main(["protocol", "ledger", str(kept / "verdict-x@1.json"), "--out", str(ledger)]) == 0
    assert "![x@1](claims/x@1.png)" in ledger.read_text()
    assert (tmp_path / "docs" / "claims" / "x@1.png").read_bytes() == b"png"


def test_the_record_a_protocol_run_keeps_in_its_folder_loads_as_that_protocol(tmp_path):
    """An earlier version is run again from its own folder's protocol-NAME@VERSION.json (a path with an
    @ in its name, the protocol wrapped with its identity); a tampered record is still refused."""
    from loops.protocols import RECORD_KEYS
    original = json.loads((HERE / "mad-fully-synthetic.json").read_text())
    protocol = load_protocol("mad-fully-synthetic")
    record = tmp_path / f"protocol-{protocol.id}.json"
    record.write_text(json.dumps(dict(zip(RECORD_KEYS, (protocol.id, protocol.identity, False, original)))))
    assert load_protocol(str(record)).identity == protocol.identity
    record.write_text(json.dumps(dict(zip(RECORD_KEYS, (protocol.id, protocol.identity, False,
                                                        {**original, "generations": 11})))))
    with pytest.raises(ConfigError, match="differs from the published mad-fully-synthetic@1"):
        load_protocol(str(record))


def test_the_base_names_the_settings_that_told_the_bases_apart(tmp_path):
    from analysis.verdicts import describe_base

    def folder(name, **cfg):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({
            "block_out_channels": [16, 32], "train_steps": 600, "loss_weighting": "min_snr",
            "sampling_scheduler": "unipc", "sampling_steps": 10, "data": "mnist", **cfg}))
        return tmp_path / name
    # a run older than the schedule, β2 and spacing fields ran linear, 0.999 and leading: it says so
    old = describe_base(folder("old"))
    assert "linear schedule" in old and "AdamW β2 0.999" in old and "(leading)" in old and "γ" not in old
    # two bases that differ only in the noise schedule, or only in γ, do not read as one
    linear = describe_base(folder("linear", beta_schedule="linear", snr_gamma=2.0))
    cosine = describe_base(folder("cosine", beta_schedule="squaredcos_cap_v2", snr_gamma=2.0))
    gamma5 = describe_base(folder("gamma5", beta_schedule="linear", snr_gamma=5.0))
    assert len({linear, cosine, gamma5}) == 3 and "min_snr γ 2 loss" in linear and "min_snr γ 5 loss" in gamma5
    # one θ_0 trained on in loops of different budgets: the budget is named, its default (0) is not
    looped = describe_base(folder("looped", loop_train_steps=2000))
    assert "600 steps (then 2000 a generation)" in looped
    assert describe_base(folder("default-loop", loop_train_steps=0)) == old
