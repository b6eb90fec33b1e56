"""Every command and flag, given hostile values: one line on stderr and a clean exit status,
never a traceback. A property-based walk over the parsers (the list in issue 14 was only the
cases someone happened to try)."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packed_bert import cli
from packed_bert.harness import benchmark
from packed_bert.workflows import plan_runner


class ReachedLoadGen(SystemExit):  # noqa: N818 - a marker, not an error
    """The run got past every check: the input was acceptable. A ``SystemExit`` so that a plan
    (a flag given as a list, ``--flag,``) lets it through rather than reporting a failed run."""


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if name != "serve"}  # serve blocks by design


COMMANDS = _commands()
# what each command needs to get going at all (the rest of its flags are fuzzed)
BASE = {
    "run": ["--sut", "null", "--count", "20", "--setting", "min_duration=50"],
    "accuracy": ["--log", "{log}"],
    "submission": ["--results", "{results}", "--out", "{out}", "--submitter", "Acme"],
    "preprocess": ["--out", "{out}/f.npz"],
    "pack-stats": [],
    "systems": [],
}
# never fuzzed: they start long work on valid values (a compliance chain, a power run, a CUDA or
# a BERT-Large model), which is not what this test is about
SKIP = {
    "run": {
        "--mode",
        "--compliance",
        "--power",
        "--power_server_ip",
        "--power-server",
        "--sut",
        "--find-peak",
        "--find_peak",
        "--cluster",
        "--sleep-before",
        "--sleep_before_ck_benchmark_sec",
        "--execution",
        "--weights",
        "--audit-config",
        "--verbose",
        "-v",
    }
}


def _flags(name: str) -> list[str]:
    out = []
    for action in COMMANDS[name]._actions:
        for opt in action.option_strings:
            if opt not in ("-h", "--help") and opt not in SKIP.get(name, set()):
                out.append(opt)
    return sorted(set(out))


HOSTILE = [
    "",
    " ",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "9" * 40,
    "x" * 300,
    "☃",
    "a=b=c",
    "=",
    ",",
    "/nonexistent/dir/file",
    "{file}",
    "{dir}",
    "{readonly}/x",
    "{readonly}",
    "TEST99",
    "v0.1",
    "bert-98",
    "multistream",
    "fp4",
    "1.5",
    "yes",
    "[]",
    "{file}:1",
]


@pytest.fixture
def places(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("PACKED_BERT_SQUAD", str(shared_data / "squad" / "dev-v1.1.json"))
    monkeypatch.setenv("PACKED_BERT_VOCAB", str(shared_data / "vocab" / "bert-uncased-vocab.txt"))
    monkeypatch.chdir(tmp_path)

    def reached(*_a: object, **_k: object) -> None:
        raise ReachedLoadGen

    monkeypatch.setattr(benchmark, "run_loadgen", reached)
    # a plan checks every run before it launches the first one, in a fresh process that no
    # patch here reaches (where a real LoadGen run of the null system may come out INVALID)
    monkeypatch.setattr(plan_runner, "run_in_fresh_process", reached)
    file = tmp_path / "plain.txt"
    file.write_text("not what anyone expects\n")
    log = tmp_path / "log.json"
    log.write_text('[{"seq_id": 0, "qsl_idx": 0, "data": "00000000"}]')
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
    (tmp_path / "results").mkdir()
    (tmp_path / "out").mkdir()
    # root writes anywhere but /proc
    unwritable = "/proc/1" if os.geteuid() == 0 else str(readonly)
    yield {
        "file": str(file),
        "dir": str(tmp_path),
        "readonly": unwritable,
        "log": str(log),
        "results": str(tmp_path / "results"),
        "out": str(tmp_path / "out"),
    }
    readonly.chmod(stat.S_IRWXU)


def _fill(words: list[str], places: dict[str, str]) -> list[str]:
    return [w.format(**places) if "{" in w else w for w in words]


def _check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except ReachedLoadGen:
        return  # every check passed and the run would start: fine for a valid value
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
    if code:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING")]
        assert lines and lines[-1].startswith("packed-bert: error: "), (argv, err)
        assert len(lines[-1]) < 600, (argv, lines[-1])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_values_end_in_one_line(
    data: st.DataObject, places: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = data.draw(st.sampled_from(sorted(COMMANDS)))
    flags = _flags(name)
    argv = [name, *_fill(BASE[name], places)]
    for _ in range(data.draw(st.integers(1, 2))):
        if not flags:
            break
        flag = data.draw(st.sampled_from(flags))
        value = data.draw(st.sampled_from(HOSTILE))
        argv += [flag, _fill([value], places)[0]]
    _check(argv, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--sut", "null", "--results-dir", "{file}"],
        ["run", "--sut", "null", "--results-dir", "{readonly}/sub"],
        ["run", "--sut", "null", "--weights", "/no/such/checkpoint"],
        ["run", "--sut", "cpu", "--weights", "{dir}"],
        ["run", "--sut", "null", "--dataset", "/no/such.json"],
        ["run", "--sut", "null", "--setting", "min_duration=99999999999999999999"],
        ["run", "--sut", "null", "--setting", "target_qps=inf"],
        ["run", "--sut", "null", "--compliance", ","],
        ["accuracy", "--log", "{dir}/empty.json"],
        ["preprocess", "--out", "{dir}"],
        ["preprocess", "--out", "/no/such/folder/f.npz"],
        ["pack-stats", "--lengths-npz", "{file}"],
        ["--sut=null", "--bogus-flag"],
    ],
)
def test_known_bad_inputs(
    argv: list[str], places: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "empty.json").write_text("[]")
    before = sorted(p.name for p in (tmp_path / "results").iterdir())
    argv = _fill(argv, places)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("packed-bert: error: ")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == before  # no directory was made
    assert not list(Path(places["dir"]).glob("*.incomplete"))


def test_a_plan_of_acceptable_values_gets_to_its_first_run(places: dict[str, str]) -> None:
    # a flag given as a list makes a plan; with values it accepts, the plan's checks pass and it
    # launches its first run (this walk once timed a real null-system run there instead)
    argv = [*BASE["run"], "--performance-dir,", "-1", "--sdk", "0"]
    with pytest.raises(ReachedLoadGen):
        cli.main(["run", *argv])
