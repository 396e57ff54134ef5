"""A protocol's verdict from its rows: each test an interval over seeds against a region, then one word.

A test reads one metric at one generation (the protocol's last unless it names `generation`):
- kind "change": one experiment's per-seed ratio of the metric at that generation to generation 0
  (or to `from_generation`);
- kind "compare": per-seed difference of experiment − baseline at that generation (`quantity`
  "value"), or of their ratios to generation 0 (`quantity` "ratio"), on the seeds both finished (a
  plain_* metric of a guided method against an unguided control reads the control's own metric);
- kind "within": two metrics of one experiment's row, per seed `metric` / `other` (`op` "ratio") or
  `metric` − `other` (`op` "difference"), e.g. target_tv against plain_target_tv of the same θ_0;
- kind "decay": how fast one experiment's per-generation increments Δ_t = m_t − m_{t−1} shrink, per seed
  the least-squares r of Δ_{t+1} ≈ r·Δ_t over t = `from_generation` (default 1) … the generation (a sum
  of past errors discounted by d per generation has increments that decay by r = d: Khelifa et al.'s
  (1−α)² for fresh data);
- kind "peak": whether the metric, over `experiments` ordered by a swept setting, peaks inside the
  sweep: per seed max(interior points) − max(first, last) at the generation (above 0: it first rises,
  then falls, Fu et al.'s threshold);
- kind "slope": one experiment's drift, per seed the least-squares slope of the metric against the
  generation over `from_generation` (default 0) … the generation, in metric units per generation
  (within [−a, a]: a plateau, "bounded"; it reads every generation of the window, where "change" reads
  two draws).
Its 95 % Student-t interval over seeds is held against the claimed region:

    above x        reproduced when the interval lies above x, not reproduced when it lies below
    below x        the mirror image
    within [a, b]  reproduced when the interval lies inside [a, b] (an equivalence test: "flat",
                   "bounded"), not reproduced when it lies wholly outside

and is inconclusive otherwise, or with fewer than two seeds. A protocol's verdict: reproduced when
every test is, not reproduced when any test is, else inconclusive.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import Reading
from analysis.report import interval

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
BASE_NOT_RECORDED = "not recorded (a verdict older than the field, kept without its run folders)"


def region_verdict(low: float, high: float, region: dict) -> str:
    """The verdict of one interval against {'above': x} | {'below': x} | {'within': [a, b]}."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if "above" in region:
        x = region["above"]
        return REPRODUCED if low > x else NOT_REPRODUCED if high < x else INCONCLUSIVE
    if "below" in region:
        x = region["below"]
        return REPRODUCED if high < x else NOT_REPRODUCED if low > x else INCONCLUSIVE
    a, b = region["within"]
    if a <= low and high <= b:
        return REPRODUCED
    return NOT_REPRODUCED if high < a or low > b else INCONCLUSIVE


def _at(df: pd.DataFrame, experiment: str, metric: str, generation: int) -> pd.Series:
    rows = df[(df["experiment"] == experiment) & (df["generation"] == generation)]
    return rows.set_index("seed")[metric] if metric in rows else pd.Series(dtype=float)


def _own(df: pd.DataFrame, experiment: str, metric: str, generation: int) -> tuple[str, pd.Series]:
    """(the metric read, its values): a plain_* metric of an unguided run, which has no plain draw beside its
    samples, reads the run's own metric (its samples are its plain draws)."""
    values = _at(df, experiment, metric, generation)
    if metric.startswith("plain_") and values.dropna().empty:
        metric = metric.removeprefix("plain_")
        values = _at(df, experiment, metric, generation)
    return metric, values


def _window(df: pd.DataFrame, experiment: str, metric: str, first: int, last: int) -> pd.DataFrame:
    """One experiment's metric, a row per seed and a column per generation first … last (NaN where missing)."""
    rows = df[(df["experiment"] == experiment) & df["generation"].between(first, last)]
    return rows.pivot_table(index="seed", columns="generation", values=metric).reindex(columns=range(first, last + 1))


def _decay(df: pd.DataFrame, experiment: str, metric: str, first: int, last: int) -> pd.Series:
    """Per seed, r minimising Σ (Δ_{t+1} − r·Δ_t)² over the increments Δ_first … Δ_last."""
    curves = _window(df, experiment, metric, first - 1, last)
    steps = curves.diff(axis=1).iloc[:, 1:].to_numpy()
    now, later = steps[:, :-1], steps[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (now * later).sum(axis=1) / (now * now).sum(axis=1)
    complete = ~np.isnan(steps).any(axis=1) & (steps.shape[1] >= 2)
    return pd.Series(np.where(complete, r, np.nan), index=curves.index)


def _slope(df: pd.DataFrame, experiment: str, metric: str, first: int, last: int) -> pd.Series:
    """Per seed, the least-squares slope of the metric over generations first … last (NaN for a seed that
    lacks one of them)."""
    curves = _window(df, experiment, metric, first, last)
    t = np.arange(first, last + 1, dtype=float)
    complete = curves.notna().all(axis=1) & (len(t) >= 2)
    slopes = [np.polyfit(t, row.to_numpy(dtype=float), 1)[0] if ok else np.nan
              for (_, row), ok in zip(curves.iterrows(), complete)]
    return pd.Series(slopes, index=curves.index, dtype=float)


def evaluate_test(df: pd.DataFrame, test: dict, generations: int) -> dict:
    """One test on rows that carry `experiment`, `seed`, `generation` and the metric."""
    generation = test.get("generation", generations - 1)
    metric, experiment = test["metric"], test.get("experiment")
    value = _at(df, experiment, metric, generation)
    if test["kind"] == "decay":
        per_seed = _decay(df, experiment, metric, test.get("from_generation", 1), generation)
    elif test["kind"] == "slope":
        metric, _ = _own(df, experiment, metric, generation)
        per_seed = _slope(df, experiment, metric, test.get("from_generation", 0), generation)
    elif test["kind"] == "peak":
        curve = pd.concat([_at(df, e, metric, generation) for e in test["experiments"]], axis=1).dropna()
        per_seed = curve.iloc[:, 1:-1].max(axis=1) - curve.iloc[:, [0, -1]].max(axis=1)
    elif test["kind"] == "change":
        per_seed = value / _at(df, experiment, metric, test.get("from_generation", 0)).replace(0, np.nan)
    elif test["kind"] == "within":
        other = _at(df, experiment, test["other"], generation)
        per_seed = value / other.replace(0, np.nan) if test.get("op", "ratio") == "ratio" else value - other
    else:
        metric, value = _own(df, experiment, metric, generation)
        base_metric, base = _own(df, test["baseline"], test["metric"], generation)
        if test.get("quantity", "value") == "ratio":
            value = value / _at(df, experiment, metric, 0).replace(0, np.nan)
            base = base / _at(df, test["baseline"], base_metric, 0).replace(0, np.nan)
        shared = value.index.intersection(base.index)
        per_seed = value[shared] - base[shared]
    per_seed = per_seed.dropna().sort_index()
    mean, low, high = interval(per_seed)
    return {**test, "generation": int(generation), "n_seeds": len(per_seed),
            "per_seed": {str(int(s)): float(v) for s, v in per_seed.items()},
            "mean": mean, "ci95_low": low, "ci95_high": high, "verdict": region_verdict(low, high, test["region"])}


def combine(verdicts: list[str]) -> str:
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE


def decide(df: pd.DataFrame, tests: list[dict], generations: int) -> tuple[str, list[dict]]:
    """(verdict, every test's numbers) of a protocol's tests on its rows."""
    results = [evaluate_test(df, test, generations) for test in tests]
    return combine([r["verdict"] for r in results]), results


def describe_test(result: dict) -> str:
    """One line: what was measured, its mean and interval, the region and the verdict."""
    if result["kind"] == "decay":
        what = (f"decay of {result['metric']}'s increments of {result['experiment']}, gens "
                f"{result.get('from_generation', 1)}-{result['generation']}")
    elif result["kind"] == "peak":
        what = (f"{result['metric']} peak inside {' → '.join(result['experiments'])} (interior − ends), "
                f"gen {result['generation']}")
    elif result["kind"] == "slope":
        what = (f"slope of {result['metric']} of {result['experiment']} a generation, gens "
                f"{result.get('from_generation', 0)}-{result['generation']}")
    elif result["kind"] == "change":
        what = f"{result['metric']} of {result['experiment']}, gen {result['generation']} / gen {result.get('from_generation', 0)}"
    elif result["kind"] == "within":
        what = (f"{result['metric']} {'/' if result.get('op', 'ratio') == 'ratio' else '−'} {result['other']} of "
                f"{result['experiment']}, gen {result['generation']}")
    else:
        what = (f"{result['metric']}{' ratio' if result.get('quantity') == 'ratio' else ''} of {result['experiment']} "
                f"− {result['baseline']}, gen {result['generation']}")
    region = result["region"]
    claimed = (f"above {region['above']:g}" if "above" in region else f"below {region['below']:g}" if "below" in region
               else f"within [{region['within'][0]:g}, {region['within'][1]:g}]")
    return (f"{what}: {result['mean']:.3g} [{result['ci95_low']:.3g}, {result['ci95_high']:.3g}] "
            f"({result['n_seeds']} seeds), claimed {claimed}: {result['verdict']}")


BOARD_METRICS = ("fid", "plain_fid", "recall")  # a leaderboard's paired differences: sample FID, model health, recall


def board_entry(df: pd.DataFrame, method: str, control: str, generation: int) -> dict:
    """A method's leaderboard figures against the unmitigated control on shared seeds, at `generation`: the
    paired difference of FID, of model health (plain_fid: the model's own samples; an unguided run's own FID)
    and of recall, each with its 95 % interval; and its cost, per seed the method's training images and
    sampler network evaluations over generations 0..generation as a multiple of the control's. At generation 0
    there is no health figure (None): every method's model is then the same θ_0 (generation 0 never depends on
    the regime, loops.generation_zero), so the difference would only be two draws of one model."""
    entry = {"method_experiment": method, "control": control, "generation": int(generation)}
    for metric in BOARD_METRICS:
        if metric == "plain_fid" and generation == 0:
            entry[metric] = None
            continue
        result = evaluate_test(df, {"kind": "compare", "experiment": method, "baseline": control, "metric": metric,
                                    "region": {"below": 0.0}, "generation": generation}, generation + 1)
        entry[metric] = {k: result[k] for k in ("mean", "ci95_low", "ci95_high", "n_seeds", "per_seed")}
    for cost in ("cost_train_images", "cost_sample_nfe"):
        spent = df[df["generation"] <= generation].groupby(["experiment", "seed"])[cost].sum()
        ratio = (spent.get(method, pd.Series(dtype=float)) / spent.get(control, pd.Series(dtype=float))).dropna()
        entry[cost] = float(ratio.mean()) if len(ratio) else float("nan")
    entry["seeds"] = sorted(entry["fid"]["per_seed"], key=int)
    return entry


def _cell(figure: dict) -> str:
    return f"{figure['mean']:+.3g} [{figure['ci95_low']:.3g}, {figure['ci95_high']:.3g}]"


def _health_cell(board: dict) -> str:
    """Model health, blank at generation 0 (θ_0 for every method; verdicts written before `board_entry` left it
    out there still hold a figure, two draws of θ_0)."""
    return "– (generation 0: θ_0 for every method)" if board["generation"] == 0 else _cell(board["plain_fid"])


def _board_table(members: list[dict]) -> list[str]:
    """The figures every method of one protocol was measured with (`board`), best sample FID first."""
    first = members[0]["board"]
    lines = [f"Each cell: method − `{first['control']}` (the unmitigated control) at generation {first['generation']}, "
             "mean [95 % interval] of the paired per-seed differences; cost: training images and sampler network "
             "evaluations over the run, as a multiple of the control's.", "",
             "| rank | method | FID | model health (plain FID) | recall | train images | sample NFE | verdict | seeds | machine |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rank, v in enumerate(sorted(members, key=lambda v: v["board"]["fid"]["mean"]), 1):
        b = v["board"]
        method = v["protocol"].split("+")[1] if "+" in v["protocol"] else f"{b['method_experiment']} (the protocol's own)"
        lines.append(f"| {rank} | {method} | {_cell(b['fid'])} | {_health_cell(b)} | {_cell(b['recall'])} | "
                     f"×{b['cost_train_images']:.2f} | ×{b['cost_sample_nfe']:.2f} | {v['verdict']} | "
                     f"{', '.join(b['seeds'])} | {v['machine']} |")
    return lines


def leaderboard_markdown(verdicts: list[dict]) -> str:
    """Methods run under one protocol (`name@version` and `name@version+method`), ranked by the paired sample
    FID difference against the same control on the same seeds (the `board` figures), or, for verdicts from
    before them, by the protocol's first test."""
    groups: dict[str, list[dict]] = {}
    for v in verdicts:
        if not v.get("smoke"):
            groups.setdefault(v["protocol"].split("+")[0], []).append(v)
    lines = []
    for protocol, members in groups.items():
        if len(members) < 2:
            continue
        if all(v.get("board") for v in members):
            lines += [f"### Leaderboard under `{protocol}`", "", *_board_table(members), ""]
            continue
        first = members[0]["tests"][0]
        lines += [f"### Leaderboard under `{protocol}`", "",
                  f"Ranked by {first['metric']} of the method − {first.get('baseline', 'generation 0')} at generation "
                  f"{first['generation']} (mean [95 % interval], seeds {', '.join(first['per_seed'])}).", "",
                  "| method | " + " | ".join(t["metric"] for t in members[0]["tests"]) + " | verdict | machine |",
                  "|---|" + "---|" * len(members[0]["tests"]) + "---|---|"]
        for v in sorted(members, key=lambda v: v["tests"][0]["mean"]):
            method = v["protocol"].split("+")[1] if "+" in v["protocol"] else "(the protocol's own)"
            cells = [f"{t['mean']:.3g} [{t['ci95_low']:.3g}, {t['ci95_high']:.3g}]" for t in v["tests"]]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {v['verdict']} | {v['machine']} |")
        lines.append("")
    return "\n".join(lines)


def ledger_markdown(verdicts: list[dict]) -> str:
    """docs/claims.md: one row per claim, from verdict.json files."""
    lines = ["# Claims ledger", "",
             "Generated by `autophagy protocol ledger` from each protocol's `verdict.json`; do not edit by hand.",
             "Each verdict holds a claim's 95 % Student-t intervals over seeds against the region the claim",
             "implies (analysis/verdicts.py). A smoke run (any setting changed) is not the protocol. Another",
             "method run under a protocol (`name@version+method`) is not its claim: it is ranked in the",
             "protocol's leaderboard below.", "",
             "| claim | source | protocol | verdict | numbers | machine |", "|---|---|---|---|---|---|"]
    for v in (v for v in verdicts if "+" not in v["protocol"]):
        numbers = "<br>".join(describe_test(t) for t in v["tests"])
        settings = ", ".join(f"{k} {val}" for k, val in v.get("settings", {}).items())
        verdict = f"**{v['verdict']}**" + (f" (smoke run: {settings})" if v.get("smoke") else "")
        figure = f"<br>![{v['protocol']}]({v['figure']})" if v.get("figure") else ""
        plan = f"plan {v['plan_identity'][:12]}, " if v.get("plan_identity") else ""
        if longer := v.get("longer_runs"):
            numbers += (f"<br>(generations 0-{v['generations'] - 1} of {len(longer)} longer run(s): "
                        f"{', '.join(sorted({Path(f).name for f in longer}))})")
        lines.append(f"| {v['claim']} | {v['source']} | `{v['protocol']}` ({v['identity'][:12]}, {plan}code "
                     f"{v['code_version']})<br>base: {v.get('base') or BASE_NOT_RECORDED} | {verdict} | "
                     f"{numbers}{figure} | {v['machine']} |")
    board = leaderboard_markdown(verdicts)
    return "\n".join(lines) + "\n" + (f"\n## Leaderboards\n\n{board}" if board else "")


def describe_base(run_folder: Path) -> str:
    """The model a run starts from, read from its folder (config.json and generation 0's saved UNet config,
    both JSON: nothing is executed), e.g. 'class-conditional UNet 16/32/32, 400 steps, min_snr γ 2 loss,
    squaredcos_cap_v2 schedule, AdamW β2 0.95, unipc 10 steps (trailing), mnist'. Every setting that told
    this project's bases apart is named: two verdicts whose bases differ only in the noise schedule or
    the loss's γ must not read as one series. A field older runs lack is the value that ran before it
    existed (the linear schedule, β2 0.999, leading spacing); a γ they lack is left unsaid. A loop budget
    (`--loop-train-steps`) follows θ_0's steps: runs that share θ_0 but train their loops differently differ."""
    import json
    cfg = json.loads((run_folder / "config.json").read_text())
    unet = run_folder / "gen_000" / "model" / "unet" / "config.json"
    embeds = json.loads(unet.read_text()).get("num_class_embeds") if unet.is_file() else None
    kind = "class-conditional" if embeds else "unconditional" if unet.is_file() else f"conditioning {cfg.get('conditioning', 'none')}"
    widths = "/".join(str(w) for w in cfg.get("block_out_channels", []))
    loss = cfg.get("loss_weighting", "none")
    if loss == "min_snr" and "snr_gamma" in cfg:
        loss += f" γ {cfg['snr_gamma']:g}"
    steps = f"{cfg.get('train_steps')} steps"
    if cfg.get("loop_train_steps"):
        steps += f" (then {cfg['loop_train_steps']} a generation)"
    return (f"{kind} UNet {widths}, {steps}, {loss} loss, "
            f"{cfg.get('beta_schedule', 'linear')} schedule, AdamW β2 {cfg.get('adam_beta2', 0.999):g}, "
            f"{cfg.get('sampling_scheduler', 'ddim')} {cfg.get('sampling_steps', cfg.get('ddim_steps'))} steps "
            f"({cfg.get('timestep_spacing', 'leading')}), {cfg.get('data')}")


def protocol_verdict(finished: list[Path], experiment_of: dict[str, str], generations: int, tests: list[dict],
                     method_point: str | None, control: str | None, report_dir: Path, reading: Reading | None = None) -> dict:
    """A protocol's verdict from its finished run folders: the tests on each run's first `generations`
    rows (a longer run serves a shorter protocol; `longer_runs` names each with its length), the board
    figures when the protocol has a method point and a control, and the report in `report_dir`."""
    from analysis.load import load_runs
    from analysis.report import write_report
    df = load_runs(finished, reading)
    held = df.groupby("run_dir")["generation"].max() + 1
    longer = {folder: int(n) for folder, n in held.items() if n > generations}
    df = df[df["generation"] < generations].assign(experiment=lambda d: d["run"].map(experiment_of))
    verdict, results = decide(df, tests, generations)
    board = board_entry(df, method_point, control, generations - 1) if control else None
    report = write_report(finished, report_dir, generation=generations - 1, reading=reading)
    bases = list(dict.fromkeys(describe_base(folder) for folder in finished))
    return {"verdict": verdict, "tests": results, "board": board, "base": "; ".join(bases),
            "runs": [str(p) for p in finished],
            "generations": generations, "longer_runs": longer,
            "figure": str((report / "curves.png").resolve()) if (report / "curves.png").is_file() else ""}


def write_ledger(verdict_files: list[Path], out: Path) -> list[dict]:
    """`out` (docs/claims.md) from verdict.json files, each claim's small figure copied into `claims/`
    beside it; returns the verdicts read. A verdict kept without its report (docs/verdicts) keeps the
    figure copied there before."""
    import json
    import shutil
    from analysis.experiments import ReportError
    verdicts = []
    figures = out.parent / "claims"
    for path in map(Path, verdict_files):
        try:
            v = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ReportError(f"ledger: {str(path)!r} is not a readable verdict.json") from None
        if not isinstance(v, dict) or not {"protocol", "claim", "verdict", "tests"} <= set(v):
            raise ReportError(f"ledger: {str(path)!r} is not a verdict.json (it lacks protocol, claim, verdict or tests)")
        tag = v["protocol"] + ("-smoke" if v.get("smoke") else "")
        source, kept = path.parent / f"report-{tag}" / "curves.png", figures / f"{tag}.png"
        if source.is_file():  # a small figure beside the ledger, linked relative to it
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, kept)
        v["figure"] = f"claims/{tag}.png" if kept.is_file() else ""
        runs = [Path(r) for r in v.get("runs", [])]
        if not v.get("base") and runs and all((r / "config.json").is_file() for r in runs):
            v["base"] = "; ".join(dict.fromkeys(map(describe_base, runs)))  # a verdict older than the field
        verdicts.append(v)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(ledger_markdown(verdicts))
    return verdicts
