"""The flag table reads a command line into a RunConfig and writes it back: both ways agree."""

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packed_bert import cli
from packed_bert.commands import run as run_cmd
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import FLAGS, to_argv
from packed_bert.terms import Batching, Execution, Mode, Model, Precision, Scenario


def parse_argv(argv: list[str]) -> RunConfig:
    args = cli.build_parser().parse_args(argv)
    return run_cmd.config_from_args(args)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-/", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-")
)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)

configs = st.builds(
    RunConfig,
    sut=words,
    model=st.sampled_from(Model),
    scenario=st.sampled_from(Scenario),
    mode=st.sampled_from(Mode),
    execution=st.sampled_from(Execution),
    results_dir=words.map(Path),
    batch_size=st.none() | st.integers(1, 10_000),
    target_qps=st.none() | positive,
    weights=st.none() | words,
    batching=st.none() | st.sampled_from(Batching),
    precision=st.none() | st.sampled_from(Precision),
    sdk=st.none() | words,
    dataset=st.none() | words.map(Path),
    find_peak=st.booleans(),
    sample_count=st.none() | st.integers(1, 20_000),
    verbose=st.booleans(),
    settings=st.dictionaries(keys, words, max_size=3),
    inflight_per_device=st.none() | st.integers(1, 8),
    server_max_wait_ms=st.none() | st.floats(min_value=0, max_value=1e3, allow_nan=False),
    server_dispatch_when_idle=st.none() | st.booleans(),
    server_min_batch=st.none() | st.integers(1, 64),
    compliance_tests=st.sampled_from([(), ("TEST01",), ("TEST01", "TEST05")]),
    round=st.none() | st.sampled_from(["v4.1", "v6.0"]),
    accuracy_dir=st.none() | words.map(Path),
    audit_test=st.none() | st.just("TEST01"),
    audit_config=st.none() | words.map(Path),
    loadgen_settings=st.dictionaries(keys, st.integers(0, 2**64 - 1) | st.booleans() | positive, max_size=3),
    power_server=st.none() | st.just("10.0.0.2:4950"),
    sleep_before_s=st.floats(min_value=0, max_value=100, allow_nan=False),
    cluster=st.none() | st.sampled_from(["ray", "auto", "10.0.0.2:6379", "ray://head:10001"]),
    cluster_devices=st.none() | st.integers(1, 64),
)


@settings(max_examples=150, deadline=None)
@given(configs)
def test_config_to_argv_and_back_is_the_same_run(cfg: RunConfig) -> None:
    if cfg.compliance_tests and cfg.mode == Mode.PERFORMANCE:
        cfg = dataclasses.replace(cfg, mode=Mode.COMPLIANCE)  # --compliance implies the mode
    argv = to_argv(cfg)
    again = parse_argv(argv[1:])
    assert dataclasses.replace(again, command_line=()) == dataclasses.replace(cfg, command_line=())
    assert to_argv(again) == argv


def test_every_field_but_the_command_line_has_a_flag() -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"command_line"}
    assert fields == {f.field for f in FLAGS}


def test_argv_names_the_core_words_and_only_what_differs() -> None:
    argv = to_argv(RunConfig(sut="cpu", batch_size=16))
    assert argv == [
        "packed-bert",
        "run",
        "--sut",
        "cpu",
        "--model",
        "bert-99",
        "--scenario",
        "offline",
        "--mode",
        "performance",
        "--batch-size",
        "16",
    ]


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--target-qps", "nan", "finite"),
        ("--target-qps", "inf", "finite"),
        ("--target-qps", "0", "> 0"),
        ("--batch-size", "0", ">= 1"),
        ("--batch-size", "x", "integer"),
        ("--count", "-3", ">= 1"),
        ("--sleep-before", "-1", ">= 0"),
        ("--scenario", "multistream", "offline, server or singlestream"),
        ("--precision", "int4", "fp32"),
        ("--server-dispatch-when-idle", "maybe", "yes or no"),
        ("--setting", "novalue", "KEY=VALUE"),
    ],
)
def test_bad_values_name_the_flag(flag: str, value: str, needle: str) -> None:
    with pytest.raises(UserError, match=flag) as err:
        parse_argv(["run", "--sut", "cpu", flag, value])
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--override_batch_size=-3"], "--override_batch_size '-3'"),
        (["--batch_size", "0"], "--batch_size '0'"),
        (["--target_qps=x"], "--target_qps 'x'"),
        (["--batch-size", "2", "--override_batch_size", "0"], "--override_batch_size '0'"),  # the last one given
    ],
)
def test_a_bad_value_names_the_spelling_the_user_typed(argv: list[str], named: str) -> None:
    typed = ["run", "--sut=r282_z93_q1", *argv]
    args = cli.build_parser().parse_args(typed)
    args.argv = ["packed-bert", *typed]  # as cli.main keeps them
    with pytest.raises(UserError) as err:
        run_cmd.config_from_args(args)
    assert str(err.value).startswith(named)


def test_library_callers_may_give_words_as_text() -> None:
    cfg = RunConfig(sut="cpu", scenario="singlestream", model="BERT99", batching="sorted")  # type: ignore[arg-type]
    assert (cfg.scenario, cfg.model, cfg.batching) == (Scenario.SINGLE_STREAM, Model.BERT_99, Batching.SORTED)
    with pytest.raises(UserError, match="--scenario"):
        RunConfig(sut="cpu", scenario="multistream")  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["-1", "bogus", "head:", ":6379", "ray://head", "10.0.0.2:99999"])
def test_a_cluster_address_is_checked_when_the_flag_is_read(address: str) -> None:
    """Before any plan or run starts (a bad one used to fail each run of a plan in turn)."""
    with pytest.raises(UserError, match="--cluster"):
        parse_argv(["run", "--sut", "null", "--cluster", address])


@pytest.mark.parametrize("address", ["ray", "local", "auto", "10.0.0.2:6379", "ray://head:10001", "[::1]:6379"])
def test_cluster_addresses_that_name_a_cluster_are_kept(address: str) -> None:
    assert parse_argv(["run", "--sut", "null", "--cluster", address]).cluster == address
