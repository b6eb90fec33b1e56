"""Plans: one command line -> the runs a round asks for, in order; kept runs, failures, the table.

Expansion is checked through ``--dry-run`` (what a user pastes); running uses the stub launcher
(real LoadGen, a SUT that answers at once), so the plan's runs leave genuine run directories.
"""

import argparse
import dataclasses
import shlex
from pathlib import Path

import pytest
from helpers.fakes import synthetic_features
from helpers.stub_launcher import StubLauncher, stub_scorer

from packed_bert import cli
from packed_bert.commands import run as run_cmd
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError
from packed_bert.harness.process import Launcher
from packed_bert.results.run_dirs import iter_runs, read_summary_json
from packed_bert.workflows.plan import PlanRequest, expand, request_from_namespace
from packed_bert.workflows.plan_runner import run_plan


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert cli.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    count = len([ln for ln in lines if not ln.startswith("#")])
    assert lines[0] == f"# plan: {count} runs" or lines[0].startswith(f"# plan: {count} runs; ")
    return [ln for ln in lines if not ln.startswith("#")]


def parse(line: str) -> RunConfig:
    args = cli.build_parser().parse_args(shlex.split(line)[1:])
    return run_cmd.config_from_args(args)


def words(line: str) -> tuple[str, str, str]:
    cfg = parse(line)
    test = ",".join(cfg.compliance_tests)
    return str(cfg.scenario), str(cfg.mode), test


def test_group_submission_is_what_the_round_requires(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = ["--results-dir", str(tmp_path)]
    # v4.1, datacenter (the q8 system's first category): Offline + Server, TEST01 and TEST05
    v41 = dry_run(capsys, "run", "--sut", "r282_z93_q8", "--group.submission", "--round", "v4.1", *res)
    assert [words(ln) for ln in v41] == [
        ("Offline", "accuracy", ""),
        ("Server", "accuracy", ""),
        ("Offline", "performance", ""),
        ("Server", "performance", ""),
        ("Offline", "compliance", "TEST01"),
        ("Offline", "compliance", "TEST05"),
        ("Server", "compliance", "TEST01"),
        ("Server", "compliance", "TEST05"),
    ]
    # v6.0: BERT is edge only: Offline + SingleStream, TEST01 only
    v60 = dry_run(capsys, "run", "--sut", "r282_z93_q8", "--group.submission", "--round", "v6.0", *res)
    assert [words(ln) for ln in v60] == [
        ("Offline", "accuracy", ""),
        ("SingleStream", "accuracy", ""),
        ("Offline", "performance", ""),
        ("SingleStream", "performance", ""),
        ("Offline", "compliance", "TEST01"),
        ("SingleStream", "compliance", "TEST01"),
    ]
    # every printed line is a command that makes that run again (the round included)
    assert all(parse(ln).round == "v6.0" and parse(ln).results_dir == tmp_path for ln in v60)
    # edge in v4.1 for the same system; open: no audit runs
    edge = dry_run(capsys, "run", "--sut", "r282_z93_q8", "--group.edge", "--group.open", "--round", "v4.1", *res)
    assert [words(ln) for ln in edge] == [
        ("Offline", "accuracy", ""),
        ("SingleStream", "accuracy", ""),
        ("Offline", "performance", ""),
        ("SingleStream", "performance", ""),
    ]


def test_list_syntax_and_the_old_harness_spelling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = dry_run(
        capsys,
        "--sut=null",
        "--model,=bert-99,bert-99.9",
        "--scenario,=offline,singlestream",
        "--mode=accuracy",
        f"--results_dir={tmp_path}",
    )
    assert sorted((str(parse(ln).model), str(parse(ln).scenario)) for ln in lines) == [
        ("bert-99", "Offline"),
        ("bert-99", "SingleStream"),
        ("bert-99.9", "Offline"),
        ("bert-99.9", "SingleStream"),
    ]
    closed = dry_run(capsys, "run", "--sut", "null", "--model,=bert-99,bert-99.9", "--group.closed", "--round", "v6.0")
    assert [(str(parse(ln).model), str(parse(ln).mode)) for ln in closed] == [
        ("bert-99", "accuracy"),
        ("bert-99.9", "accuracy"),
        ("bert-99", "performance"),
        ("bert-99.9", "performance"),
        ("bert-99", "compliance"),
        ("bert-99.9", "compliance"),
    ]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--group.datacenter", "--round", "v6.0"], "BERT is not a datacenter benchmark in MLPerf Inference v6.0"),
        (
            ["--group.edge", "--model", "bert-99.9", "--round", "v4.1"],
            "bert-99.9 is not an edge benchmark in MLPerf Inference v4.1",
        ),
        (["--group.edge", "--scenario", "server"], "drop --scenario"),
        (["--group.closed", "--mode", "accuracy"], "drop --mode"),
        (["--model", "bert-99", "--model,=bert-99,bert-99.9"], "give --model or --model,=A,B..., not both"),
        (["--round,=v4.1,v9.9"], "--round 'v9.9': unknown MLPerf round"),
    ],
)
def test_impossible_plans_are_one_line_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--sut", "null", *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def plan_of(tmp_path: Path, *argv: str) -> list:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    run_cmd.register(sub)
    ns = parser.parse_args(["run", "--sut", "null", "--results-dir", str(tmp_path), *argv])
    return expand(ns, request_from_namespace(ns))


class Failing:
    """The stub launcher, but the run matching ``fail`` raises ``exc``."""

    def __init__(self, fail: tuple[str, str], exc: BaseException) -> None:
        self.stub = StubLauncher()
        self.fail, self.exc, self.calls = fail, exc, 0

    def __call__(self, cfg: RunConfig) -> Path:
        self.calls += 1
        if (str(cfg.scenario), str(cfg.mode)) == self.fail and cfg.audit_test is None:
            raise self.exc
        return self.stub(cfg)


def test_plan_runs_in_order_keeps_what_is_done_and_ends_with_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = plan_of(tmp_path, "--group.edge", "--group.closed", "--round", "v6.0")
    stub = StubLauncher()
    assert run_plan(runs, launch=stub, scorer=stub_scorer) == 0
    # accuracy runs, performance runs, then each compliance run's audit run
    assert [(str(c.scenario), str(c.mode), c.audit_test) for c in stub.configs] == [
        ("Offline", "accuracy", None),
        ("SingleStream", "accuracy", None),
        ("Offline", "performance", None),
        ("SingleStream", "performance", None),
        ("Offline", "performance", "TEST01"),
        ("SingleStream", "performance", "TEST01"),
    ]
    out = capsys.readouterr().out
    table = out[out.index("run  ") :].splitlines()
    assert table[0].split() == ["run", "status", "key", "figure", "directory"]
    assert [ln.split()[:5] for ln in table[2:8]] == [
        ["null", "bert-99", "Offline", "accuracy", "PASS"],
        ["null", "bert-99", "SingleStream", "accuracy", "PASS"],
        ["null", "bert-99", "Offline", "performance", "VALID"],
        ["null", "bert-99", "SingleStream", "performance", "VALID"],
        ["null", "bert-99", "Offline", "TEST01", "TEST"],
        ["null", "bert-99", "SingleStream", "TEST01", "TEST"],
    ]
    assert all(str(tmp_path) in ln for ln in table[2:8])
    assert "plan: 6 of 6 runs have a valid result" in out
    # the same plan again runs nothing; --rerun runs it all again
    again = StubLauncher()
    assert run_plan(runs, launch=again, scorer=stub_scorer) == 0
    assert again.configs == []
    assert capsys.readouterr().out.count(": kept, a valid result is in ") == 6
    rerun = StubLauncher()
    assert run_plan(runs[:2], rerun=True, launch=rerun) == 0
    assert [str(c.mode) for c in rerun.configs] == ["accuracy", "accuracy"]


def test_an_interrupted_plan_goes_on_where_it_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = plan_of(tmp_path, "--group.edge", "--group.open", "--round", "v6.0")
    first = Failing(("Offline", "performance"), KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_plan(runs, launch=first)
    out = capsys.readouterr().out
    assert "NOT RUN" in out and "give the same command again to go on" in out
    second = StubLauncher()
    assert run_plan(runs, launch=second) == 0
    # the two accuracy runs are kept; the performance runs are made now
    assert [(str(c.scenario), str(c.mode)) for c in second.configs] == [
        ("Offline", "performance"),
        ("SingleStream", "performance"),
    ]
    assert capsys.readouterr().out.count("(kept)") == 2


def test_a_failing_run_is_passed_over_and_what_needs_it_is_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = plan_of(tmp_path, "--group.edge", "--group.closed", "--round", "v6.0")
    launcher: Launcher = Failing(("Offline", "performance"), RuntimeError("device 0 failed:\nboom"))
    with pytest.raises(
        RunError, match=r"plan: 1 of 6 runs failed; null bert-99 Offline performance: device 0 failed: boom"
    ):
        run_plan(runs, launch=launcher, scorer=stub_scorer)  # the CLI's one closing line, exit 1
    out = capsys.readouterr().out
    rows = {" ".join(ln.split()[1:4]): ln for ln in out[out.index("run  ") :].splitlines()[2:]}
    assert (
        "FAILED" in rows["bert-99 Offline performance"]
        and "device 0 failed: boom" in rows["bert-99 Offline performance"]
    )
    assert (
        "NOT RUN" in rows["bert-99 Offline TEST01"]
        and "needs null bert-99 Offline performance" in rows["bert-99 Offline TEST01"]
    )
    # the independent runs went on
    assert "VALID" in rows["bert-99 SingleStream performance"] and "TEST PASS" in rows["bert-99 SingleStream TEST01"]
    assert "plan: 4 of 6 runs have a valid result" in out


def test_dry_run_marks_runs_already_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = plan_of(tmp_path, "--group.edge", "--group.open", "--round", "v6.0")
    assert run_plan(runs[:1], launch=StubLauncher()) == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "run",
                "--sut",
                "null",
                "--results-dir",
                str(tmp_path),
                "--group.edge",
                "--group.open",
                "--round",
                "v6.0",
                "--dry-run",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("# kept (a valid result is in ") and "--mode accuracy" in lines[2]
    assert sum(ln.startswith("# kept") for ln in lines) == 1
    # a run of another round is not this plan's
    other = dataclasses.replace(runs[0].cfg, round="v5.1")
    from packed_bert.workflows.plan_runner import find_done

    assert find_done(runs[0].cfg) is not None and find_done(other) is None


def test_a_run_that_ended_short_of_min_duration_runs_once_more_at_the_advised_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the simulated q1 card runs bert-99 at 670.9 samples/s; a target of 100 issues 110 samples a
    # second's min_duration, which it finishes in a sixth of it: INVALID, and LoadGen's own rate
    # then sizes the second run past min_duration
    argv = ["--sut", "r282_z93_q1", "--target-qps", "100", "--setting", "min_duration=1000"]
    runs = [r for r in plan_of(tmp_path, *argv, "--group.open", "--scenario", "offline") if r.cfg.mode == "performance"]
    ran: list[RunConfig] = []

    def launch(cfg: RunConfig) -> Path:
        ran.append(cfg)
        return run_benchmark(cfg, features=synthetic_features(64)).run_dir

    assert run_plan(runs, launch=launch) == 0
    assert [c.target_qps for c in ran][0] == 100.0 and len(ran) == 2
    first, second = (read_summary_json(d) for d, _ in iter_runs(tmp_path))  # both directories kept
    advised = ran[1].target_qps
    assert first["valid"] is False and first["advised_target_qps"] == advised
    assert advised is not None and 1.25 <= advised / first["samples_per_second"] < 1.25 * 1.1  # rounded up
    assert second["valid"] is True and second["target_qps"] == advised and second["advised_target_qps"] is None
    out = capsys.readouterr().out
    assert f"once more at the --target-qps it advises, {advised:g} (the run before stays in " in out
    row = next(line for line in out.splitlines() if line.startswith("r282_z93_q1 bert-99 Offline performance "))
    assert row.split()[4:8] == ["VALID", f"{second['samples_per_second']:,.1f}", "samples/s", "at"]
    # given again, the plan keeps the valid run made at the advised target
    assert run_plan(runs, launch=launch) == 0 and len(ran) == 2
    assert ": kept, a valid result is in " in capsys.readouterr().out


def test_a_plan_says_how_long_its_timed_runs_take_at_least(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from packed_bert.workflows.plan_time import plan_line

    res = ["--results-dir", str(tmp_path)]
    # v4.1 datacenter: 2 performance runs and 4 audit runs (TEST01, TEST05 in each scenario) of 600 s
    argv = ["run", "--sut", "r282_z93_q8", "--group.submission", "--round", "v4.1", "--execution", "valid"]
    assert cli.main([*argv, *res, "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "# plan: 8 runs; 6 timed LoadGen runs of at least 10 min (min_duration): 60 min or more, besides the accuracy runs"
    )
    # test-length runs take the system file's min_duration, or the user's
    runs = expand(*_namespace("--sut", "r282_z93_q8", "--group.submission", "--setting", "min_duration=1500", *res))
    line = plan_line(runs, [True] * len(runs))
    assert line.endswith("4 timed LoadGen runs of at least 2 s (min_duration): 6 s or more, besides the accuracy runs")
    # runs that are kept do not count; a plan of accuracy runs alone has no floor
    assert plan_line(runs, [r.cfg.mode != "performance" for r in runs]).endswith(
        ": 3 s or more, besides the accuracy runs"
    )
    assert plan_line(runs[:2], [True, True]) == "plan: 2 runs"
    # a power run is two timed runs (ranging, testing)
    power = expand(*_namespace("--sut", "null", "--mode", "power", "--scenario,=offline,singlestream", *res))
    assert plan_line(power, [True, True]).startswith("plan: 2 runs; 4 timed LoadGen runs of at least ")


def _namespace(*argv: str) -> tuple[argparse.Namespace, PlanRequest]:
    ns = cli.build_parser().parse_args(["run", *argv])
    return ns, request_from_namespace(ns)
