"""Reading an MLPerf ``mlperf_log_accuracy.json`` into per-feature logits.

Each entry's ``data`` is the hex of the response: [tokens, 2] values of ``dtype`` (start, end
interleaved). Shorter payloads are padded with -10000 to 384 tokens, as the official script
does; if a ``qsl_idx`` is logged twice the last entry wins.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from packed_bert.errors import UserError
from packed_bert.results.loadgen_logs import read_accuracy_log
from packed_bert.terms import SEQ_LEN

PAD_LOGIT = -10000.0
DTYPES = ("float32", "float16", "float64", "int8", "int16", "int32", "int64")


@dataclass
class FeatureLogits:
    """Logits of the features a log answered, in ascending ``qsl_idx`` order."""

    qsl_idx: npt.NDArray[np.int64]
    """[M] feature indices."""
    start: npt.NDArray[np.float64]
    """[M, 384] start logits, padded with -10000."""
    end: npt.NDArray[np.float64]
    """[M, 384] end logits, padded with -10000."""


def parse_dtype(name: str) -> np.dtype:
    if name not in DTYPES:
        raise UserError(f"--dtype {name}: unknown; use one of {', '.join(DTYPES)}")
    return np.dtype(name)


def read_payloads(path: Path, dtype: str = "float32") -> dict[int, bytes]:
    """The raw payload of each ``qsl_idx`` in an accuracy log (last entry wins)."""
    parse_dtype(dtype)
    out: dict[int, bytes] = {}
    for n, e in enumerate(read_accuracy_log(path)):
        try:
            out[e.qsl_idx] = bytes.fromhex(e.data)
        except ValueError:
            raise UserError(f"{path}: entry {n} (qsl_idx {e.qsl_idx}) has bad hex in data") from None
    return out


def decode_payloads(
    payloads: Mapping[int, bytes | npt.ArrayLike],
    num_features: int,
    dtype: str = "float32",
    source: str = "responses",
) -> FeatureLogits:
    """Logits of each answered feature; payloads are raw bytes of ``dtype`` or arrays."""
    dt = parse_dtype(dtype)
    idx = np.array(sorted(payloads), dtype=np.int64)
    if idx.size and idx[-1] >= num_features:
        raise UserError(
            f"{source}: qsl_idx {int(idx[-1])} is not a feature (there are {num_features}); "
            "score the log with the dataset it was made from"
        )
    start = np.full((idx.size, SEQ_LEN), PAD_LOGIT, dtype=np.float64)
    end = np.full((idx.size, SEQ_LEN), PAD_LOGIT, dtype=np.float64)
    # Group payloads by size so that each size is converted in one numpy call.
    raw: dict[int, list[int]] = {}
    arrays: dict[int, list[int]] = {}
    for row, q in enumerate(idx.tolist()):
        p = payloads[q]
        if isinstance(p, bytes):
            if len(p) % dt.itemsize:
                raise UserError(f"{source}: qsl_idx {q} payload of {len(p)} bytes is not whole {dt.name} values")
            n = len(p) // dt.itemsize
            raw.setdefault(n, []).append(row)
        else:
            n = int(np.size(p))
            arrays.setdefault(n, []).append(row)
        if n % 2 or n // 2 > SEQ_LEN:
            raise UserError(
                f"{source}: qsl_idx {q} payload holds {n} values; expected 2 per token, at most "
                f"{SEQ_LEN} tokens (check --dtype)"
            )
    keys = idx.tolist()
    groups = [(n, rows, True) for n, rows in raw.items()] + [(n, rows, False) for n, rows in arrays.items()]
    for n, rows, is_raw in groups:
        if is_raw:
            flat = np.frombuffer(b"".join([payloads[keys[r]] for r in rows]), dtype=dt)  # type: ignore[misc]
        else:
            flat = np.concatenate([np.asarray(payloads[keys[r]]).reshape(-1) for r in rows])
        logits = flat.reshape(len(rows), n // 2, 2)
        start[rows, : n // 2] = logits[:, :, 0]
        end[rows, : n // 2] = logits[:, :, 1]
    return FeatureLogits(idx, start, end)
