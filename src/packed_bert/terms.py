"""The run's vocabulary, defined once: models, scenarios, modes, executions, batchings,
categories, divisions, precisions, and the MLPerf BERT constants (384 tokens, 10,833
features, 130 ms, F1 targets).

Every other module takes these names from here. The enums are ``StrEnum``s, so a member is
equal to its MLPerf spelling (``Scenario.OFFLINE == "Offline"``) and is written as that string
in JSON, user.conf and directory names. ``parse`` takes the spellings users type (any case,
``single_stream``, ``bert99``) and raises ``UserError`` naming the flag and the choices.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from packed_bert.errors import UserError

# --- SQuAD v1.1 features, as the MLPerf reference makes them ---------------------------------
SEQ_LEN = 384  # max_seq_length: tokens per feature and per packed row
DOC_STRIDE = 128
MAX_QUERY_LENGTH = 64
DATASET_FEATURES = 10_833  # features of the dev set (LoadGen's total and performance sample count)
DATASET_QUESTIONS = 10_570
MAX_SEQS_PER_ROW = 3  # packing: at most this many sequences share one 384-token row

# --- MLPerf rules for BERT --------------------------------------------------------------------
CONF_MODEL = "bert"  # the model's name in mlperf.conf / user.conf / audit.config
SERVER_LATENCY_BOUND_MS = 130.0  # Server: 99th-percentile latency bound
FP32_REFERENCE_F1 = 90.874


class Model(StrEnum):
    BERT_99 = "bert-99"
    BERT_99_9 = "bert-99.9"

    @property
    def target_f1(self) -> float:
        """The F1 a run must reach: 99% / 99.9% of the fp32 reference's 90.874."""
        return ACCURACY_TARGET_F1[self]

    @property
    def f1_ratio(self) -> float:
        return 0.99 if self is Model.BERT_99 else 0.999


ACCURACY_TARGET_F1: dict[str, float] = {Model.BERT_99: 89.965, Model.BERT_99_9: 90.783}


class Scenario(StrEnum):
    OFFLINE = "Offline"
    SERVER = "Server"
    SINGLE_STREAM = "SingleStream"


class Mode(StrEnum):
    ACCURACY = "accuracy"
    PERFORMANCE = "performance"
    COMPLIANCE = "compliance"
    POWER = "power"


class Execution(StrEnum):
    TEST = "test"  # short runs through user.conf
    VALID = "valid"  # LoadGen's mlperf.conf minimums
    DEMO = "demo"  # a short run sized to the machine, with checks


class Batching(StrEnum):
    PACKED = "packed"  # up to MAX_SEQS_PER_ROW sequences per 384-token row
    SORTED = "sorted"  # sorted by length, each batch padded to its longest
    PADDED = "padded"  # every sequence padded to 384


class Questions(StrEnum):
    """Which SQuAD dev questions a run answers, by article (0-based, file order)."""

    ALL = "all"
    ODD_ARTICLES = "odd-articles"  # articles 1, 3, ..., 47
    EVEN_ARTICLES = "even-articles"  # articles 0, 2, ..., 46


class Category(StrEnum):
    """The MLPerf system type a result is submitted in (``system_type`` in systems/*.json)."""

    EDGE = "edge"
    DATACENTER = "datacenter"


class Division(StrEnum):
    CLOSED = "closed"  # the reference's model and rules: accuracy, performance and audit tests
    OPEN = "open"  # anything goes; no audit tests


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    # int8 linear layers with some kept in bf16 (on our AMX kernels: the FFN output layer, whose
    # heavy-tailed input costs int8 most of its accuracy), attention in bf16
    INT8_BF16 = "int8-bf16"
    # the same with that layer in fp32 (ONNX Runtime, and OpenVINO where the CPU has no bf16)
    INT8_FP32 = "int8-fp32"
    FP8 = "fp8"


# precisions whose int8 layers are calibrated on the 100 calibration questions
CALIBRATED = (Precision.INT8, Precision.INT8_BF16, Precision.INT8_FP32)


def data_types(precision: str) -> str:
    """The number formats of ``precision``, as a submission's system description lists them:
    ``int8-bf16`` -> ``int8, bf16``."""
    return ", ".join(precision.split("-"))


E = TypeVar("E", bound=StrEnum)

# Spellings users type besides the members' own values (compared in lower case, with "_" and
# " " taken as "-").
_ALIASES: dict[type[StrEnum], dict[str, str]] = {
    Model: {"bert99": "bert-99", "bert99.9": "bert-99.9", "bert-999": "bert-99.9"},
    Scenario: {"single-stream": "SingleStream", "singlestream": "SingleStream"},
}


def parse(kind: type[E], text: object, flag: str) -> E:
    """``text`` as a member of ``kind``; a ``UserError`` naming ``flag`` and the choices if not."""
    if isinstance(text, kind):
        return text
    key = str(text).strip().lower().replace("_", "-").replace(" ", "-")
    by_key = {m.value.lower(): m for m in kind}
    by_key.update({a: kind(v) for a, v in _ALIASES.get(kind, {}).items()})
    if key not in by_key:
        raise UserError(f"{flag} {text!r}: choose {choices(kind)}")
    return by_key[key]


def choices(kind: type[StrEnum]) -> str:
    """``offline, server or singlestream``: the members as users type them."""
    names = [m.value.lower() if kind is Scenario else m.value for m in kind]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
