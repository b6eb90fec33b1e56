"""Rounds as data: each round's seeds reach LoadGen, its categories and scenarios, its mlperf.conf."""

import json
from pathlib import Path

import pytest
from helpers.fakes import synthetic_features

from packed_bert.compliance import rules
from packed_bert.errors import UserError
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.results.loadgen_logs import DETAIL, read_detail
from packed_bert.rounds import DEFAULT_ROUND, ROUNDS, get_round, mlperf_conf_text, pick_category
from packed_bert.terms import Category, Scenario


def short_run(tmp_path: Path, rnd: str | None, **kw: object) -> Path:
    cfg = RunConfig(sut="null", round=rnd, results_dir=tmp_path, sample_count=64, settings={"min_duration": "50"}, **kw)  # type: ignore[arg-type]
    return run_benchmark(cfg, features=synthetic_features(64), quiet=True).run_dir


@pytest.mark.parametrize("rnd", ["v4.1", "v5.0", "v6.0", "v6.1", None])
def test_a_run_takes_its_rounds_seeds(tmp_path: Path, rnd: str | None) -> None:
    run_dir = short_run(tmp_path, rnd)
    detail = read_detail(run_dir / DETAIL)
    want = get_round(rnd).seeds
    got = [detail[f"effective_{k}_rng_seed"][-1] for k in ("qsl", "sample_index", "schedule")]
    assert got == [want.qsl, want.sample_index, want.schedule]
    assert json.loads((run_dir / "summary.json").read_text())["round"] == (rnd or DEFAULT_ROUND)
    assert json.loads((run_dir / "settings.json").read_text())["harness"]["round"] == (rnd or DEFAULT_ROUND)


def test_a_test05_audit_run_takes_the_rounds_test05_seeds(tmp_path: Path) -> None:
    rnd = get_round("v4.1")
    run_dir = short_run(tmp_path, "v4.1", loadgen_settings=rules.test_settings_overrides("TEST05", rnd))
    detail = read_detail(run_dir / DETAIL)
    assert rnd.test05_seeds is not None
    assert detail["effective_qsl_rng_seed"][-1] == rnd.test05_seeds.qsl == 16799458546791641818


def test_the_seeds_are_the_rounds_own() -> None:
    assert len({r.seeds for r in ROUNDS.values()}) == len(ROUNDS)
    assert get_round("4.1").seeds.qsl == 3066443479025735752  # the value the v4.1 checker expects
    assert get_round("v6.0").seeds.qsl == 2465351861681999779
    assert [r.name for r in ROUNDS.values() if r.test05_seeds] == ["v4.0", "v4.1"]
    assert [r.name for r in ROUNDS.values() if "TEST05" in r.tests] == ["v4.0", "v4.1"]
    conf = mlperf_conf_text(get_round("v4.1"))
    assert (
        "*.*.qsl_rng_seed = 3066443479025735752\n" in conf
        and "*.*.test05_qsl_rng_seed = 16799458546791641818\n" in conf
    )
    assert "bert.Server.target_latency = 130\n" in conf and "test05" not in mlperf_conf_text(get_round("v5.0"))


def test_categories_and_scenarios_per_round() -> None:
    v41, v60 = get_round("v4.1"), get_round("v6.0")
    assert v41.categories == (Category.EDGE, Category.DATACENTER) and v60.categories == (Category.EDGE,)
    assert v41.required_scenarios("bert-99", "datacenter") == (Scenario.OFFLINE, Scenario.SERVER)
    assert v60.required_scenarios("bert-99.9", "edge") == (Scenario.OFFLINE, Scenario.SINGLE_STREAM)
    with pytest.raises(UserError, match="BERT is not a datacenter benchmark in MLPerf Inference v6.0"):
        v60.required_scenarios("bert-99", "datacenter")
    with pytest.raises(UserError, match="bert-99.9 is not an edge benchmark in MLPerf Inference v4.1"):
        v41.required_scenarios("bert-99.9", "edge")
    both = (Category.DATACENTER, Category.EDGE)
    assert pick_category(v41, both, None, "q8") == Category.DATACENTER
    assert pick_category(v60, both, None, "q8") == Category.EDGE  # the first the round allows
    with pytest.raises(UserError, match="system q8 claims only datacenter"):
        pick_category(v41, (Category.DATACENTER,), "edge", "q8")
    with pytest.raises(UserError, match="add that to its system file's categories"):
        pick_category(v60, (Category.DATACENTER,), None, "q8")


def test_a_run_says_when_its_round_has_no_such_scenario_for_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = RunConfig(
        sut="null",
        round="v6.0",
        scenario="server",
        results_dir=tmp_path,
        sample_count=64,
        settings={"min_duration": "50"},
    )
    run_dir = run_benchmark(cfg, features=synthetic_features(64)).run_dir
    note = json.loads((run_dir / "settings.json").read_text())["harness"]["round_note"]
    assert "v6.0 has no Server scenario for bert-99 (edge: Offline, SingleStream)" in note
    assert note.endswith("--round v4.1 takes it")
    assert f"note: {note}" in capsys.readouterr().out
    offline = json.loads((short_run(tmp_path, "v6.0") / "settings.json").read_text())
    assert offline["harness"]["round_note"] == ""
    v41 = get_round("v4.1")
    assert v41.takes("bert-99.9", "Server") and not v41.takes("bert-99.9", "SingleStream")
    assert v41.scenario_note("bert-99.9", "SingleStream").endswith("--round v6.1 takes it")
