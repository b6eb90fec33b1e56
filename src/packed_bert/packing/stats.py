"""Figures of merit of a packing: rows, token efficiency, speed-up over padding."""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from packed_bert.terms import SEQ_LEN


@dataclass(frozen=True)
class PackingStats:
    sequences: int
    packs: int
    real_tokens: int
    row_len: int

    @property
    def token_efficiency(self) -> float:
        """Real tokens / (packs x row_len)."""
        return self.real_tokens / (self.packs * self.row_len) if self.packs else 1.0

    @property
    def padded_efficiency(self) -> float:
        """Real tokens / (sequences x row_len): what padding every sequence to a row uses."""
        return self.real_tokens / (self.sequences * self.row_len) if self.sequences else 1.0

    @property
    def speedup_over_padding(self) -> float:
        """Padded tokens / packed tokens (= sequences / packs)."""
        return self.sequences / self.packs if self.packs else 1.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["token_efficiency"] = self.token_efficiency
        out["padded_efficiency"] = self.padded_efficiency
        out["speedup_over_padding"] = self.speedup_over_padding
        return out


def packing_stats(lengths: npt.ArrayLike, rows: int, row_len: int = SEQ_LEN) -> PackingStats:
    lens = np.asarray(lengths, dtype=np.int64)
    return PackingStats(int(lens.size), int(rows), int(lens.sum()), row_len)
