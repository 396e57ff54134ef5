"""Versioned protocols: a claim of the literature, the runs that test it and the rule that decides it, as data.

A protocol is a JSON file shipped beside this module (`<name>.json`), or any file a paper brings:

    name, version        `name@version`; a published protocol never changes under the same version
    claim, source        the claim in one sentence, and the paper it comes from
    preset, overrides    the run settings every point starts from
    points               {experiment name: {config field: value}}: the experiments (folder <name>-s<seed>)
    seeds, generations   the shared seeds (paired statistics) and the length of every run
    tests                how the claim is decided (analysis.verdicts): per test, a metric of one
                         experiment (its change from generation 0, kind "change"), of two experiments
                         on shared seeds ("compare"), of two metrics of one row ("within"), the decay
                         of its increments ("decay"), its drift over a window of generations
                         ("slope") or a sweep's interior peak ("peak"), and the region its 95 %
                         interval must lie in
    method_point         optional: the experiment that `--method NAME` replaces with a plug-in's method

`versions.json` holds the identity (sha256 of the canonical JSON) of every published `name@version`:
a protocol whose content changed while its version did not is refused, and so is an output folder
that holds another protocol under the same name and version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autophagy.config import ConfigError, RunConfig, field_names, make_config
from loops.sweep import folder_name

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "versions.json"
TEST_KINDS = ("change", "compare", "within", "decay", "peak", "slope")  # analysis.verdicts
KEYS = ("name", "version", "claim", "source", "preset", "overrides", "points", "seeds", "generations", "tests")
RECORD_KEYS = ("protocol", "identity", "smoke", "values")  # protocol-NAME@VERSION.json in a protocol's folder
OPTIONAL = ("method_point", "method", "notes")


@dataclass(frozen=True)
class Protocol:
    values: dict  # the parsed file, every key of KEYS (+ OPTIONAL)

    @property
    def id(self) -> str:
        """name@version, and +method when a plug-in's method fills the method point."""
        method = self.values.get("method")
        return f"{self.values['name']}@{self.values['version']}" + (f"+{method}" if method else "")

    @property
    def identity(self) -> str:
        """sha256 of the canonical JSON: changes when anything in the protocol changes."""
        return hashlib.sha256(json.dumps(self.values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def __getattr__(self, key):
        if key in KEYS or key in OPTIONAL:
            return self.values.get(key)
        raise AttributeError(key)


def shipped() -> list[str]:
    """Names of the protocols shipped with autophagy."""
    return sorted(p.stem for p in HERE.glob("*.json") if p.name != PUBLISHED.name)


def load_protocol(name_or_file: str) -> Protocol:
    """A shipped protocol by name (`mad-fully-synthetic` or `mad-fully-synthetic@1`), or a protocol file
    (also the `protocol-NAME@VERSION.json` record a protocol run keeps in its folder, so that an earlier
    version can be run again there); checked for its keys and against the published identity of its
    name@version."""
    name, _, version = name_or_file.partition("@")
    if name in shipped():
        path = HERE / f"{name}.json"
    elif Path(name_or_file).is_file():  # a file, whose name may hold an @
        path, version = Path(name_or_file), ""
    else:
        raise ConfigError(f"protocol: {name_or_file!r} is neither a shipped protocol ({', '.join(shipped())}) "
                          f"nor a protocol file")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"protocol: {str(path)!r} is not readable JSON ({type(exc).__name__})") from None
    if isinstance(values, dict) and set(values) == set(RECORD_KEYS):  # a run folder's record of what it ran
        values = values["values"]
    protocol = Protocol(check_keys(values, str(path)))
    if version and str(protocol.version) != version:
        raise ConfigError(f"protocol: {name}@{version} is not shipped; this autophagy has {protocol.id}")
    published = json.loads(PUBLISHED.read_text()).get(protocol.id)
    if published and published != protocol.identity:
        raise ConfigError(f"protocol: {str(path)!r} is {protocol.id} but differs from the published {protocol.id} "
                          f"(identity {protocol.identity[:12]} vs {published[:12]}); a changed protocol needs a new version")
    return protocol


def check_keys(values, where: str) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"protocol: {where} is not a JSON object")
    missing = [k for k in KEYS if k not in values]
    unknown = [k for k in values if k not in KEYS + OPTIONAL]
    if missing or unknown:
        raise ConfigError(f"protocol: {where} " + "; ".join(filter(None, [
            missing and f"lacks {', '.join(missing)}", unknown and f"has unknown keys {', '.join(unknown)}"])))
    if not isinstance(values["points"], dict) or not values["points"]:
        raise ConfigError(f"protocol: {where} has no points")
    for point in values["points"].values():
        bad = [k for k in point if k not in field_names() or k in ("seed", "generations", "preset")]
        if bad:
            raise ConfigError(f"protocol: {where} sets {', '.join(bad)} in a point; points set run fields only")
    for test in values["tests"]:
        if test.get("kind") not in TEST_KINDS:
            raise ConfigError(f"protocol: {where} has a test of kind {test.get('kind')!r}; kinds are "
                              f"{', '.join(TEST_KINDS)}")
        if test["kind"] == "peak" and len(test.get("experiments", [])) < 3:
            raise ConfigError(f"protocol: {where} has a peak test over {test.get('experiments')!r}; it needs "
                              "three or more experiments in the order of the swept setting")
        for experiment in [test.get("experiment"), test.get("baseline"), *test.get("experiments", [])]:
            if experiment is not None and experiment not in values["points"]:
                raise ConfigError(f"protocol: {where} tests experiment {experiment!r}, which is not a point")
    return values


def plan_identity(runs: list[tuple[str, RunConfig]]) -> str:
    """sha256 of the planned runs as their regimes and samplers read them: the protocol's identity says what
    it asks; this says what ran, so two verdicts of one `name@version` made under presets that have since
    moved (the cpu preset's Neon w, say) are told apart."""
    from loops.regimes import as_read
    planned = [[name, _without_neutral(json.loads(as_read(cfg).to_json()))] for name, cfg in sorted(runs, key=lambda r: r[0])]
    return hashlib.sha256(json.dumps(planned, sort_keys=True).encode()).hexdigest()


# Run fields added after plan identities were first recorded: at their default they mean what a plan without
# them meant, so they leave its identity as it was.
NEUTRAL_AT_DEFAULT = {"loop_train_steps": 0}


def _without_neutral(values: dict) -> dict:
    return {k: v for k, v in values.items() if not (k in NEUTRAL_AT_DEFAULT and v == NEUTRAL_AT_DEFAULT[k])}


def with_method(protocol: Protocol, method: str) -> Protocol:
    """The protocol with its method point replaced by a plug-in's regime or sampler `method`."""
    from loops.regimes import REGIMES
    from loops.samplers import SAMPLERS
    slot = protocol.method_point
    if not slot:
        raise ConfigError(f"--method: {protocol.id} has no method point; it tests one fixed claim")
    point = dict(protocol.points[slot])
    if method in REGIMES:
        point["regime"] = method
    elif method in SAMPLERS:
        point["sampler"] = method
    else:
        raise ConfigError(f"--method: {method!r} is neither a regime nor a sampler (load it with --plugin)")
    if point == protocol.points[slot]:
        raise ConfigError(f"--method: {method!r} is what {protocol.id}'s method point {slot!r} runs already; its "
                          f"leaderboard row is the protocol's own verdict (verdict-{protocol.id}.json); name another "
                          f"regime or sampler")
    if method in protocol.points and method != slot:
        raise ConfigError(f"--method: {method!r} is the protocol's point {method!r} already; a method is compared "
                          f"against the other points")
    # the method point takes the method's name: its runs (`<method>-s0`) never collide with the protocol's own
    # method's, a method already run in the folder is reused (a longer run serves a shorter protocol), and
    # the tests name what they measured
    def renamed(name):
        return method if name == slot else name
    points = {renamed(name): (point if name == slot else p) for name, p in protocol.points.items()}
    tests = [{**t, **{k: renamed(t[k]) for k in ("experiment", "baseline") if k in t},
              **({"experiments": [renamed(e) for e in t["experiments"]]} if "experiments" in t else {})}
             for t in protocol.tests]
    return Protocol({**protocol.values, "points": points, "tests": tests, "method_point": method, "method": method})


def board_control(protocol: Protocol) -> str | None:
    """The unmitigated control a method is ranked against on the leaderboard: the baseline of the protocol's
    first comparison of its method point (None without a method point)."""
    for test in protocol.tests:
        if protocol.method_point and test["kind"] == "compare" and test["experiment"] == protocol.method_point:
            return test["baseline"]
    return None


def plan(protocol: Protocol, preset: str | None = None, overrides: dict | None = None
         ) -> tuple[list[tuple[str, RunConfig]], dict[str, str], bool]:
    """(runs as (folder, config), {folder: experiment}, smoke): every point x seed. Any preset, setting,
    seeds or generations that are not the protocol's own mark the result a smoke run, not the protocol."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    seeds = overrides.pop("seeds", None) or protocol.seeds
    generations = overrides.pop("generations", None) or protocol.generations
    changed = {k for k in overrides if k != "plugins"}  # plug-ins add a method; they change no setting
    smoke = bool(changed) or seeds != protocol.seeds or generations != protocol.generations \
        or (preset is not None and preset != protocol.preset)
    runs, experiment_of = [], {}
    for experiment, point in protocol.points.items():
        values = {**protocol.overrides, **point, **overrides}
        if "block_out_channels" in values:
            values["block_out_channels"] = tuple(values["block_out_channels"])
        base = make_config(preset or protocol.preset, generations=generations, **values)
        for seed in seeds:
            name = folder_name(f"{experiment}-s{seed}")
            runs.append((name, dataclasses.replace(base, seed=seed)))
            experiment_of[name] = experiment
    return runs, experiment_of, smoke


def claim_folder_check(out: Path, protocol: Protocol, smoke: bool) -> Path:
    """The record of which protocol this folder's verdict belongs to: written once, then compared. A smoke
    run has its own record (and verdict), so that it never stands for the protocol."""
    record = out / f"protocol-{protocol.id}{'-smoke' if smoke else ''}.json"
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except ValueError:
            saved = {}
        if saved.get("identity") != protocol.identity or saved.get("smoke") != smoke:
            raise ConfigError(f"--out: {str(out)!r} holds {protocol.id} with identity {str(saved.get('identity'))[:12]} "
                              f"({'smoke' if saved.get('smoke') else 'the protocol'}); this is {protocol.identity[:12]} "
                              f"({'smoke' if smoke else 'the protocol'}); choose another --out")
    return record


def publish() -> list[str]:
    """Record the identity of every shipped protocol not yet published (for maintainers, after adding a
    protocol or a new version); a published identity is never rewritten: `python -m loops.protocols`."""
    published = json.loads(PUBLISHED.read_text())
    added = []
    for name in shipped():
        values = check_keys(json.loads((HERE / f"{name}.json").read_text()), name)
        protocol = Protocol(values)
        if protocol.id not in published:
            published[protocol.id] = protocol.identity
            added.append(protocol.id)
        elif published[protocol.id] != protocol.identity:
            raise ConfigError(f"protocol: {name}.json changed under the published {protocol.id}; give it a new version")
    PUBLISHED.write_text(json.dumps(dict(sorted(published.items())), indent=2) + "\n")
    return added
