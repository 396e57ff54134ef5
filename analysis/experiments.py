"""Which runs belong to one experiment, how it is labelled, and whether runs may share a table.

An experiment is every config field except the seed (and the bookkeeping fields below), with the
sampler resolved (`regime=sims` and `regime=synthetic-augmentation --sampler sims` stay two
experiments, but an empty --sampler equals the regime's own). Its label names only the fields that
differ between the experiments at hand, e.g. `sims ω=1` against `sims ω=2`.
"""
from __future__ import annotations

import pandas as pd

from autophagy.layout import BOOKKEEPING_FIELDS

# fields of the measuring instrument: runs that differ in one of them cannot share a table
INSTRUMENT_COLUMNS = {"feature_space": "feature space", "feature_id": "feature network", "k": "k",
                      "n_reference": "n_reference", "evaluated_on": "evaluation split"}
SHORT = {"guidance_weight": "ω", "neon_weight": "w", "sampling_bias": "λ", "curation_keep": "q"}
# Which fields a run's regime and sampler read, and which regime a mitigation is measured against, come
# from their registrations through the rows (`uses`, `control`), for built-ins and plug-ins alike.
USES, CONTROL = "uses_fields", "control"


class ReportError(ValueError):
    """Runs that cannot be reported together (the CLI exits with code 2)."""


def identity_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("cfg_") and c[4:] not in BOOKKEEPING_FIELDS)


def _resolved(df: pd.DataFrame) -> pd.DataFrame:
    """cfg_sampler and cfg_features resolved from the rows (the sampler that drew S_t, the space it was
    measured in)."""
    df = df.copy()
    if "sampler" in df.columns and "cfg_sampler" in df.columns:
        df["cfg_sampler"] = df["sampler"]
    if "feature_space" in df.columns and "cfg_features" in df.columns:  # `auto` and `lenet` that measured alike
        df["cfg_features"] = df["feature_space"]
    for col in identity_columns(df):  # NaN (a field that an older run lacks) compares as a value
        df[col] = df[col].astype(object).where(df[col].notna(), "∅")
    # the fields the run's methods read, as its rows say (a run from before `uses` shows them all)
    df[USES] = [",".join(u) if isinstance(u, dict) else None for u in (df["uses"] if "uses" in df else [None] * len(df))]
    if CONTROL not in df.columns:
        df[CONTROL] = None
    return df


def method_fields(df: pd.DataFrame) -> set[str]:
    """Every field some run at hand declares that its regime or sampler reads."""
    return {f for u in df[USES].dropna() for f in u.split(",") if f}


def label_experiments(df: pd.DataFrame) -> pd.DataFrame:
    """Add `experiment` (the label) to every row; labels name the fields that differ between experiments."""
    df = _resolved(df)
    cols = identity_columns(df)
    keys = df[cols + [USES, "own_sampler"]].drop_duplicates(subset=cols) if "own_sampler" in df else \
        df[cols + [USES]].drop_duplicates(subset=cols).assign(own_sampler=None)
    varying = [c for c in cols if keys[c].nunique() > 1]
    declared = method_fields(df)

    def label(row, short=True) -> str:
        parts = []
        used = None if row[USES] is None else set(row[USES].split(","))
        for c in varying:
            name, value = c[4:], row[c]
            if name == "regime":
                parts.insert(0, str(value))
            elif short and used is not None and name in declared and name not in used:
                continue  # a field this run's methods do not read
            elif name == "sampler" and "cfg_regime" in varying and value == row["own_sampler"]:
                continue  # the regime's own sampler: the regime's name says it
            else:
                parts.append(f"{SHORT.get(name, name)}={value if value != '' else '∅'}")  # '' = the field off
        return " ".join(parts) or str(row.get("cfg_regime", "run"))
    if not len(df):
        df["experiment"] = []
        return df
    keys["experiment"] = keys.apply(label, axis=1)
    clash = keys["experiment"].duplicated(keep=False)  # two experiments may never share a label
    keys.loc[clash, "experiment"] = keys[clash].apply(lambda row: label(row, short=False), axis=1)
    return df.merge(keys[cols + ["experiment"]], on=cols, how="left")


def check_instruments(df: pd.DataFrame) -> None:
    """Refuse rows measured with different instruments, naming the field and its values."""
    for column, name in INSTRUMENT_COLUMNS.items():
        if column in df.columns and df[column].nunique(dropna=True) > 1:
            values = ", ".join(map(str, sorted(df[column].dropna().unique(), key=str)))
            raise ReportError(f"report: the runs were measured with different instruments: {name} ({column}) "
                              f"takes {values}; report them separately")


def complete_seeds(df: pd.DataFrame, generation: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Only seeds that reached the last generation of their experiment (or `generation`, for every
    experiment, cutting later rows); {experiment: [missing seeds]}."""
    kept, missing = [], {}
    last = df.groupby("experiment")["cfg_generations"].max() - 1 if "cfg_generations" in df else \
        df.groupby("experiment")["generation"].max()
    if generation is not None:
        last[:] = generation
    for experiment, group in df.groupby("experiment", sort=False):
        reached = group.groupby("seed")["generation"].max()
        full = reached[reached >= last[experiment]].index
        if len(full) < len(reached):
            missing[experiment] = sorted(int(s) for s in reached.index.difference(full))
        kept.append(group[group["seed"].isin(full) & (group["generation"] <= last[experiment])])
    return pd.concat(kept, ignore_index=True) if kept else df.iloc[:0], missing


def control_of(df: pd.DataFrame, experiment: str) -> str | None:
    """The unmitigated control of a mitigation experiment: the same loop, plain sampler, no mitigation."""
    rows = df[df["experiment"] == experiment]
    if not len(rows):
        return None
    declared = method_fields(df)
    cols = [c for c in identity_columns(df) if c[4:] not in declared]
    target = rows.iloc[0][cols].to_dict()
    control = rows.iloc[0][CONTROL]
    if isinstance(control, str) and control:
        target["cfg_regime"] = control
    target["cfg_sampler"] = "plain"
    if target == rows.iloc[0][cols].to_dict():
        return None  # not a mitigation
    for other, group in df.groupby("experiment", sort=False):
        if other != experiment and group.iloc[0][cols].to_dict() == target:
            return other
    return None
