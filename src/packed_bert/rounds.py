"""MLPerf Inference rounds as data: what each round asks of a BERT run and a BERT submission.

For each round: LoadGen's three seeds (and TEST05's, while TEST05 existed), the audit tests
BERT must pass, the submission layout, and the categories BERT may be submitted in with the
scenarios each requires per model. LoadGen 5.0 and later carry one round's mlperf.conf inside
themselves (6.0.17: v6.1's seeds), so a run for another round sets that round's seeds on
LoadGen's TestSettings after the conf files are read (``RunConfig.loadgen_settings``).

Facts from mlcommons/inference at each round's tag: ``mlperf.conf`` (``loadgen/mlperf.conf``
from v5.0 on) for the seeds, and ``tools/submission`` (``MODEL_CONFIG``: ``seeds``,
``test05_seeds``, ``required-scenarios-edge`` / ``-datacenter``, the audit tests per model, the
``code/`` or ``src/`` folder) for the rest; v6.0 and v6.1 from the checker at HEAD.
BERT stopped being a datacenter benchmark in v5.0 (edge only, SingleStream + Offline; no Server)
and TEST05 ended with v4.1. The F1 targets never changed (``terms.ACCURACY_TARGET_F1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from packed_bert.errors import UserError
from packed_bert.terms import (
    CONF_MODEL,
    DATASET_FEATURES,
    SERVER_LATENCY_BOUND_MS,
    Category,
    Model,
    Scenario,
    parse,
)

Layout = Literal["legacy", "consolidated"]

KNOWN_TESTS = ("TEST01", "TEST05")
MIN_DURATION_MS = 600_000  # every scenario's min_duration in mlperf.conf; the checker wants it
SINGLE_STREAM_MIN_QUERIES = 1024  # without early stopping (the checker's min-queries)


@dataclass(frozen=True)
class Seeds:
    qsl: int
    sample_index: int
    schedule: int

    def settings(self, prefix: str = "") -> dict[str, int]:
        """As LoadGen TestSettings fields: ``qsl_rng_seed`` ... (``test05_qsl_rng_seed`` with a prefix)."""
        return {
            f"{prefix}qsl_rng_seed": self.qsl,
            f"{prefix}sample_index_rng_seed": self.sample_index,
            f"{prefix}schedule_rng_seed": self.schedule,
        }


ScenarioTable = Mapping[Category, Mapping[Model, tuple[Scenario, ...]]]
SS, OFF, SRV = Scenario.SINGLE_STREAM, Scenario.OFFLINE, Scenario.SERVER
_V4_SCENARIOS: ScenarioTable = {
    Category.DATACENTER: {Model.BERT_99: (OFF, SRV), Model.BERT_99_9: (OFF, SRV)},
    Category.EDGE: {Model.BERT_99: (OFF, SS)},  # bert-99.9 was datacenter only
}
_V5_SCENARIOS: ScenarioTable = {
    Category.EDGE: {Model.BERT_99: (OFF, SS), Model.BERT_99_9: (OFF, SS)},
}


def with_article(category: Category | str) -> str:
    """``category`` after its indefinite article: "an edge", "a datacenter"."""
    return f"{'an' if str(category)[:1] in 'aeiou' else 'a'} {category}"


@dataclass(frozen=True)
class Round:
    name: str
    seeds: Seeds  # mlperf.conf's qsl / sample_index / schedule seeds of this round
    tests: tuple[str, ...]  # the audit tests BERT must pass in this round
    layout: Layout  # submission tree: legacy (to v5.1) or consolidated (v6.0 on)
    scenarios: ScenarioTable  # category -> model -> required scenarios
    test05_seeds: Seeds | None = None
    code_dir: str = "code"  # the submission's implementation folder: code/ (to v5.1), src/ (v6.0 on)

    @property
    def categories(self) -> tuple[Category, ...]:
        """The categories BERT may be submitted in this round."""
        return tuple(c for c in Category if self.scenarios.get(c))

    def required_scenarios(self, model: Model | str, category: Category | str) -> tuple[Scenario, ...]:
        """The scenarios a ``category`` submission of ``model`` needs; a one-line error if BERT
        (or that model) is not in that category this round."""
        cat = parse(Category, category, "--category")
        mdl = parse(Model, model, "--model")
        by_model = self.scenarios.get(cat, {})
        if not by_model:
            allowed = " or ".join(self.categories)
            raise UserError(
                f"BERT is not {with_article(cat)} benchmark in MLPerf Inference {self.name} ({allowed} only; datacenter BERT "
                f"ended with v4.1): choose {self.categories[0]} (--group.{self.categories[0]} in a plan, --category "
                f"{self.categories[0]} for submission), or --round v4.1 for a {cat} result"
            )
        if mdl not in by_model:
            raise UserError(
                f"{mdl} is not {with_article(cat)} benchmark in MLPerf Inference {self.name} (only "
                f"{', '.join(by_model)}); use --model {next(iter(by_model))} or another category"
            )
        return by_model[mdl]

    def takes(self, model: Model | str, scenario: Scenario | str) -> bool:
        """Whether some category of this round takes ``model`` in ``scenario``."""
        mdl, scn = parse(Model, model, "--model"), parse(Scenario, scenario, "--scenario")
        return any(scn in by_model.get(mdl, ()) for by_model in self.scenarios.values())

    def scenario_note(self, model: Model | str, scenario: Scenario | str) -> str:
        """Why a ``scenario`` run of ``model`` is no part of a submission in this round, and the
        latest round that takes it; "" where this round takes it."""
        mdl, scn = parse(Model, model, "--model"), parse(Scenario, scenario, "--scenario")
        if self.takes(mdl, scn):
            return ""
        here = "; ".join(f"{c}: {', '.join(b[mdl])}" for c, b in self.scenarios.items() if mdl in b)
        other = [name for name, rnd in ROUNDS.items() if rnd.takes(mdl, scn)]
        return (
            f"MLPerf Inference {self.name} has no {scn} scenario for {mdl} ({here or 'not a benchmark'}): "
            f"this run is no part of a {self.name} submission" + (f"; --round {other[-1]} takes it" if other else "")
        )

    def seed_settings(self) -> dict[str, int]:
        """The TestSettings fields that make a LoadGen run this round's: its three seeds (and
        TEST05's seeds, which take effect only when ``test05`` is set)."""
        out = self.seeds.settings()
        if self.test05_seeds is not None:
            out.update(self.test05_seeds.settings("test05_"))
        return out


def _r(
    name: str,
    seeds: tuple[int, int, int],
    tests: tuple[str, ...],
    layout: Layout,
    scenarios: ScenarioTable,
    test05: tuple[int, int, int] | None = None,
) -> Round:
    return Round(
        name,
        Seeds(*seeds),
        tests,
        layout,
        scenarios,
        Seeds(*test05) if test05 else None,
        "src" if layout == "consolidated" else "code",
    )


ROUNDS: dict[str, Round] = {
    r.name: r
    for r in (
        _r(
            "v4.0",
            (13281865557512327830, 198141574272810017, 7575108116881280410),
            ("TEST01", "TEST05"),
            "legacy",
            _V4_SCENARIOS,
            (2376919268182438552, 11176391829184272374, 3911940905271271337),
        ),
        _r(
            "v4.1",
            (3066443479025735752, 10688027786191513374, 14962580496156340209),
            ("TEST01", "TEST05"),
            "legacy",
            _V4_SCENARIOS,
            (16799458546791641818, 5453809927556429288, 5435552105434836064),
        ),
        _r(
            "v5.0",
            (6023615788873153749, 15036839855038426416, 9933818062894767841),
            ("TEST01",),
            "legacy",
            _V5_SCENARIOS,
        ),
        _r(
            "v5.1",
            (1780908523862526354, 14771362308971278857, 18209322760996052031),
            ("TEST01",),
            "legacy",
            _V5_SCENARIOS,
        ),
        _r(
            "v6.0",
            (2465351861681999779, 14276810075590677512, 3936089224930324775),
            ("TEST01",),
            "consolidated",
            _V5_SCENARIOS,
        ),
        _r(
            "v6.1",
            (2085463073848966840, 2747215439041700203, 16159082839903944936),
            ("TEST01",),
            "consolidated",
            _V5_SCENARIOS,
        ),
    )
}
DEFAULT_ROUND = "v6.0"
LAST_ROUND_WITH_TEST05 = "v4.1"


def round_name(name: str | None) -> str:
    """``v4.1`` from ``4.1``, ``V4.1`` or ``v4.1``; ``None`` is the default round."""
    key = DEFAULT_ROUND if name is None else str(name).strip().lower()
    if key and not key.startswith("v"):
        key = "v" + key
    return key


def get_round(name: str | None) -> Round:
    """The round's rules; ``None`` means the default round."""
    key = round_name(name)
    if key not in ROUNDS:
        raise UserError(f"--round {name!r}: unknown MLPerf round; supported rounds: {', '.join(ROUNDS)}")
    return ROUNDS[key]


def mlperf_conf_text(rnd: Round) -> str:
    """The round's mlperf.conf rules for BERT, as the run applied them (LoadGen's built-in
    conf with this round's seeds): what the submission's measurements folder carries."""
    m = CONF_MODEL
    lines = [
        f"# mlperf.conf of MLPerf Inference {rnd.name} for BERT, as packed-bert ran it: LoadGen's",
        "# built-in rules with this round's seeds (set on TestSettings after the conf files).",
        f"{m}.*.performance_sample_count_override = {DATASET_FEATURES}",
        *(f"*.*.{k} = {v}" for k, v in rnd.seeds.settings().items()),
        *(f"*.*.{k} = {v}" for k, v in (rnd.test05_seeds.settings("test05_") if rnd.test05_seeds else {}).items()),
        "*.SingleStream.target_latency_percentile = 90",
        f"*.SingleStream.min_duration = {MIN_DURATION_MS}",
        "*.Server.target_latency_percentile = 99",
        "*.Server.target_duration = 0",
        f"*.Server.min_duration = {MIN_DURATION_MS}",
        f"{m}.Server.target_latency = {SERVER_LATENCY_BOUND_MS:g}",
        "*.Offline.target_latency_percentile = 90",
        f"*.Offline.min_duration = {MIN_DURATION_MS}",
        f"{m}.Offline.min_query_count = {DATASET_FEATURES}",
    ]
    return "\n".join(lines) + "\n"


def pick_category(rnd: Round, claimed: tuple[Category, ...], asked: Category | str | None, system: str) -> Category:
    """The category a submission (or a plan) of ``system`` takes in ``rnd``: the one asked for,
    checked against the round and the system file, or the system's first the round allows."""
    if asked is not None:
        cat = parse(Category, asked, "--category")
        if cat not in rnd.categories:
            rnd.required_scenarios(Model.BERT_99, cat)  # raises the round's one-line error
        if cat not in claimed:
            raise UserError(
                f"--category {cat}: system {system} claims only {', '.join(claimed)} (the categories of "
                f"its system file); add {cat} there if it qualifies"
            )
        return cat
    for cat in claimed:
        if cat in rnd.categories:
            return cat
    raise UserError(
        f"system {system} claims {', '.join(claimed)}, and BERT in MLPerf Inference {rnd.name} is "
        f"{' or '.join(rnd.categories)} only: add that to its system file's categories, or use --round v4.1"
    )
