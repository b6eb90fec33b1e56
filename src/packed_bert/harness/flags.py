"""The run's flags: one table that both reads a command line into a ``RunConfig`` and writes a
``RunConfig`` back as the command line that makes it again (``to_argv``).

Each ``Flag`` names a ``RunConfig`` field, its spellings (the first is the one written back; the
others are the old harness's, such as ``--override_batch_size``), and how its text becomes a
value. Flags that only workflows set (an audit run's ``--audit-config``) are hidden from
``--help`` but still written back, so every run directory's ``command.txt`` reruns that run.
The old harness's composite spellings (``--power=yes``, ``--power_server_ip`` +
``--power_server_port``, ``--no-packing``) are read by ``LEGACY_FLAGS`` and never written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packed_bert.address import check_cluster_address
from packed_bert.errors import UserError
from packed_bert.harness.config import LoadGenValue, RunConfig
from packed_bert.rounds import DEFAULT_ROUND, ROUNDS, get_round
from packed_bert.terms import (
    SERVER_LATENCY_BOUND_MS,
    Batching,
    Execution,
    Mode,
    Model,
    Precision,
    Questions,
    Scenario,
    parse,
)


def _int_at_least(lo: int) -> Callable[[str, str], int]:
    def read(text: str, flag: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise UserError(f"{flag} {text!r}: expected an integer >= {lo}") from None
        if value < lo:
            raise UserError(f"{flag} {text!r}: must be >= {lo}")
        return value

    return read


def _number(lo: float, inclusive: bool) -> Callable[[str, str], float]:
    def read(text: str, flag: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise UserError(f"{flag} {text!r}: expected a number") from None
        if not math.isfinite(value) or value < lo or (value == lo and not inclusive):
            raise UserError(f"{flag} {text!r}: must be a finite number {'>=' if inclusive else '>'} {lo:g}")
        return value

    return read


def _enum(kind: Any) -> Callable[[str, str], Any]:
    return lambda text, flag: parse(kind, text, flag)


def _text(text: str, flag: str) -> str:
    if not str(text).strip():
        raise UserError(f"{flag}: give a value")
    return str(text).strip()


def _round(text: str, flag: str) -> str:
    return get_round(_text(text, flag)).name


def _path(text: str, flag: str) -> Path:
    return Path(_text(text, flag))


def _yes_no(text: str, flag: str) -> bool:
    value = str(text).strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise UserError(f"{flag} {text!r}: choose yes or no")


def _names(text: str, flag: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in str(text).split(",") if p.strip())
    if not items:
        raise UserError(f"{flag} {text!r}: give one or more names separated by commas")
    return items


def _tests(text: str, flag: str) -> tuple[str, ...]:
    return tuple(name.upper() for name in _names(text, flag))


def key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UserError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def loadgen_value(text: str, flag: str = "--loadgen-setting") -> LoadGenValue:
    """A TestSettings value written as text: an integer, a finite number, or true/false."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(low)
    except ValueError:
        pass
    try:
        value = float(low)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected an integer, a number or true/false") from None
    if not math.isfinite(value):
        raise UserError(f"{flag} {text!r}: must be finite")
    return value


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@dataclass(frozen=True)
class Flag:
    field: str  # the RunConfig field
    names: tuple[str, ...]  # spellings; names[0] is written back
    help: str
    read: Callable[[str, str], Any] | None = None  # text -> value; None: a switch
    switch_sets: bool = True  # a switch sets the field to this
    pairs: bool = False  # repeated KEY=VALUE into a mapping
    metavar: str | None = None
    hidden: bool = False
    always: bool = False  # written back even at its default (the run's core words)
    write: Callable[[Any], str] | None = None  # value -> text; default _render


FLAGS: tuple[Flag, ...] = (
    Flag(
        "sut", ("--sut",), "system name (see `packed-bert systems`) or the path of a system .toml", _text, always=True
    ),
    Flag("model", ("--model",), "bert-99 | bert-99.9", _enum(Model), always=True),
    Flag(
        "scenario",
        ("--scenario",),
        "offline | server | singlestream",
        _enum(Scenario),
        always=True,
        write=lambda v: str(v).lower(),
    ),
    Flag("mode", ("--mode",), "accuracy | performance | compliance | power", _enum(Mode), always=True),
    Flag(
        "batch_size",
        ("--batch-size", "--batch_size", "--override_batch_size"),
        "samples per device batch (default: the system file's)",
        _int_at_least(1),
        metavar="N",
    ),
    Flag(
        "target_qps",
        ("--target-qps", "--target_qps"),
        "LoadGen target QPS (SingleStream: expected latency 1/Q; default: the system file's)",
        _number(0.0, inclusive=False),
        metavar="Q",
    ),
    Flag(
        "execution",
        ("--execution",),
        "test: short runs; valid: MLPerf minimums; demo: short run + checks",
        _enum(Execution),
    ),
    Flag(
        "results_dir",
        ("--results-dir", "--results_dir"),
        "where run directories go (default ./results)",
        _path,
        metavar="DIR",
    ),
    Flag("weights", ("--weights",), "random | tiny | PATH (default: the system file's)", _text),
    Flag("batching", ("--batching",), "packed | sorted | padded (default: the system file's)", _enum(Batching)),
    Flag(
        "precision",
        ("--precision",),
        "fp32 | bf16 | fp16 | int8 | int8-bf16 | int8-fp32 | fp8 (default: the system file's)",
        _enum(Precision),
    ),
    Flag(
        "find_peak",
        ("--find-peak", "--find_peak"),
        f"Server: search the highest QPS meeting the {SERVER_LATENCY_BOUND_MS:g} ms p99 bound",
    ),
    Flag("dataset", ("--dataset",), "SQuAD v1.1 dev json", _path, metavar="PATH"),
    Flag("vocab", ("--vocab",), "BERT uncased vocab.txt", _path, metavar="PATH"),
    Flag(
        "sample_count",
        ("--count", "--sample-count", "--sample_count"),
        "use only the first N samples (quick runs)",
        _int_at_least(1),
        metavar="N",
    ),
    Flag(
        "questions",
        ("--questions",),
        "run and score only these SQuAD dev questions: all | odd-articles | even-articles (by article; default all)",
        _enum(Questions),
    ),
    Flag(
        "settings",
        ("--setting",),
        "a user.conf setting for this scenario, e.g. min_duration=20000",
        key_value,
        pairs=True,
        metavar="KEY=VALUE",
    ),
    Flag("sdk", ("--sdk",), "accelerator SDK version, recorded in system.json", _text),
    Flag("verbose", ("--verbose", "-v"), "print every effective LoadGen setting"),
    Flag(
        "inflight_per_device",
        ("--inflight-per-device",),
        "batches in flight per device (default: the system file's)",
        _int_at_least(1),
        metavar="N",
    ),
    Flag(
        "server_max_wait_ms",
        ("--server-max-wait-ms",),
        "Server: longest wait to fill a batch, ms",
        _number(0.0, inclusive=True),
        metavar="MS",
    ),
    Flag(
        "server_dispatch_when_idle",
        ("--server-dispatch-when-idle",),
        "Server: also send a batch when a device is idle (yes|no)",
        _yes_no,
        metavar="yes|no",
    ),
    Flag(
        "server_min_batch",
        ("--server-min-batch",),
        "Server: least samples an idle dispatch sends",
        _int_at_least(1),
        metavar="N",
    ),
    Flag(
        "cluster",
        ("--cluster",),
        "run the devices as Ray actors: ray (an embedded one-node cluster), auto, "
        "HOST:PORT or ray://HOST:PORT (join that cluster); see docs/cluster.md",
        check_cluster_address,
        metavar="ADDRESS",
    ),
    Flag(
        "cluster_devices",
        ("--cluster-devices",),
        "how many of the cluster's devices (default: all of the system's kind)",
        _int_at_least(1),
        metavar="N",
    ),
    Flag(
        "compliance_tests",
        ("--compliance", "--compliance,"),
        "audit tests, e.g. TEST01,TEST05 (implies --mode compliance)",
        _tests,
        metavar="TEST01[,TEST05]",
    ),
    Flag(
        "round",
        ("--round",),
        f"MLPerf round whose seeds and audit tests the run takes: {', '.join(ROUNDS)} (default {DEFAULT_ROUND})",
        _round,
    ),
    Flag(
        "accuracy_dir",
        ("--accuracy-dir", "--accuracy_dir"),
        "compliance: the accuracy run to compare with (default: the newest in --results-dir)",
        _path,
        metavar="DIR",
    ),
    Flag(
        "performance_dir",
        ("--performance-dir", "--performance_dir"),
        "compliance: the performance run to compare with (default: the newest)",
        _path,
        metavar="DIR",
    ),
    Flag("audit_test", ("--audit-test",), "the compliance test this audit run is", _text, hidden=True),
    Flag("audit_config", ("--audit-config",), "the audit.config LoadGen reads", _path, hidden=True),
    Flag(
        "loadgen_settings",
        ("--loadgen-setting",),
        "a LoadGen TestSettings field set after the conf files",
        key_value,
        pairs=True,
        hidden=True,
    ),
    Flag("power_server", ("--power-server",), "the MLPerf power server", _text, metavar="HOST:PORT"),
    Flag("ntp_server", ("--ntp", "--ntp_server"), "NTP server for the power client", _text, metavar="HOST"),
    Flag(
        "sleep_before_s",
        ("--sleep-before", "--sleep_before_ck_benchmark_sec"),
        "seconds to wait before the power run",
        _number(0.0, inclusive=True),
        metavar="S",
    ),
)
FLAG_BY_FIELD = {f.field: f for f in FLAGS}

# Old-harness spellings that combine into fields; read only.
LEGACY_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--power",), "legacy_power", "yes: the old spelling of --mode power"),
    (("--power_server_ip",), "legacy_power_ip", "the power server's address (with --power_server_port)"),
    (("--power_server_port",), "legacy_power_port", "the power server's port (default 4950)"),
    (("--no-packing", "--no_packing"), "legacy_no_packing", "same as --batching padded"),
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every run flag on ``parser``; values stay text until ``config_from_namespace``."""
    for flag in FLAGS:
        help_text = argparse.SUPPRESS if flag.hidden else flag.help
        if flag.read is None:
            parser.add_argument(
                *flag.names, dest=flag.field, action="store_const", const=flag.switch_sets, default=None, help=help_text
            )
        elif flag.pairs:
            parser.add_argument(
                *flag.names, dest=flag.field, action="append", default=None, metavar=flag.metavar, help=help_text
            )
        else:
            parser.add_argument(*flag.names, dest=flag.field, default=None, metavar=flag.metavar, help=help_text)
    for names, dest, help_text in LEGACY_FLAGS:
        if dest == "legacy_no_packing":
            parser.add_argument(*names, dest=dest, action="store_true", help=help_text)
        else:
            parser.add_argument(*names, dest=dest, default=None, help=help_text)


def config_from_namespace(ns: argparse.Namespace, command_line: Sequence[str] = ()) -> RunConfig:
    """The ``RunConfig`` the parsed flags ask for; a bad value is a one-line ``UserError``."""
    values: dict[str, Any] = {}
    for flag in FLAGS:
        raw = getattr(ns, flag.field, None)
        if raw is None:
            continue
        shown = _spelled(flag.names, command_line)
        if flag.read is None:
            values[flag.field] = raw
        elif flag.pairs:
            pairs = dict(flag.read(item, shown) for item in raw)
            if flag.field == "loadgen_settings":
                pairs = {k: loadgen_value(v, shown) for k, v in pairs.items()}
            values[flag.field] = pairs
        else:
            values[flag.field] = flag.read(raw, shown)
    if "sut" not in values:
        raise UserError("--sut is required: name a system (see `packed-bert systems`) or a .toml file")
    _apply_legacy(ns, values)
    return RunConfig(**values, command_line=tuple(command_line))


def _spelled(names: Sequence[str], command_line: Sequence[str]) -> str:
    """The spelling of a flag that the command line used last (what an error should name, such
    as the old harness's ``--override_batch_size``); its first name where none shows."""
    used = [n for token in command_line for n in names if token == n or token.startswith(f"{n}=")]
    return used[-1] if used else names[0]


def _apply_legacy(ns: argparse.Namespace, values: dict[str, Any]) -> None:
    if getattr(ns, "legacy_no_packing", False):
        if values.get("batching") not in (None, Batching.PADDED):
            raise UserError("--no-packing and --batching disagree; give one of them")
        values["batching"] = Batching.PADDED
    power = getattr(ns, "legacy_power", None)
    if power is not None and _yes_no(power, "--power") and values.get("mode", Mode.PERFORMANCE) == Mode.PERFORMANCE:
        values["mode"] = Mode.POWER
    ip = getattr(ns, "legacy_power_ip", None)
    if ip:
        port = getattr(ns, "legacy_power_port", None) or "4950"
        values["power_server"] = f"{ip}:{port}"
    if values.get("compliance_tests") and values.get("mode", Mode.PERFORMANCE) == Mode.PERFORMANCE:
        values["mode"] = Mode.COMPLIANCE


def to_argv(cfg: RunConfig, program: Sequence[str] = ("packed-bert", "run")) -> list[str]:
    """The command line that makes ``cfg`` again: every field that differs from its default."""
    argv = list(program)
    for flag in FLAGS:
        value = getattr(cfg, flag.field)
        if value == _DEFAULTS[flag.field] and not flag.always:
            continue
        name = flag.names[0]
        if flag.read is None:
            if value == flag.switch_sets:
                argv.append(name)
        elif flag.pairs:
            for key, item in dict(value).items():
                text = ("true" if item else "false") if isinstance(item, bool) else _render(item)
                argv += [name, f"{key}={text}"]
        elif value is not None:
            argv += [name, (flag.write or _render)(value)]
    return argv


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """``dataclasses.replace`` that also records the new run's own command line."""
    new = dataclasses.replace(cfg, **changes)
    return dataclasses.replace(new, command_line=tuple(to_argv(new)))
