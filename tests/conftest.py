"""Shared fixtures: the read-only data beside the project at ../shared/data, and the power
server stand-in. Shared helpers (fakes, stubs) live in ``tests/helpers/``."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.power import fake_power_server

from packed_bert.squad.features import SquadFeatures, load_features

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "squad" / "dev-v1.1.json").exists():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (SQuAD dev, vocab, fixtures)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the user's cache; one cache per test session keeps reruns fast."""
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def squad_paths(shared_data: Path) -> tuple[Path, Path]:
    """SQuAD dev json and the BERT vocab of the shared data."""
    return shared_data / "squad" / "dev-v1.1.json", shared_data / "vocab" / "bert-uncased-vocab.txt"


@pytest.fixture(scope="session")
def squad_features(squad_paths: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> SquadFeatures:
    """The 10,833 features of the shared SQuAD dev set, built once per test session (in the
    session's own cache: session fixtures are set up before ``_isolated_cache``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return load_features(*squad_paths)


@pytest.fixture
def server() -> Iterator[str]:
    """HOST:PORT of a listener standing in for the MLPerf power server."""
    yield from fake_power_server()


@pytest.fixture
def suts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``BenchmarkSUT``s the test's runs built, to read their device pools afterwards."""
    from packed_bert.harness import benchmark
    from packed_bert.harness.sut import BenchmarkSUT

    made: list[BenchmarkSUT] = []

    class Recorded(BenchmarkSUT):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(benchmark, "BenchmarkSUT", Recorded)
    return made


def _kernel_tile_kinds() -> list[Any]:
    """The tile kinds packed-bert's kernels can run on here (``amx_kernels.TILES``: the AMX units
    and their AVX-512 stand-ins, kernels/soft_tiles.h), each where the CPU has what it needs; a
    skipped case says why."""
    from packed_bert.backends.amx_kernels import TILES
    from packed_bert.backends.cpu_class import cpu_flags

    flags = cpu_flags()
    return [
        pytest.param(
            kind,
            marks=pytest.mark.skipif(not flags >= needs, reason=f"the {kind} tiles need {', '.join(sorted(needs))}"),
        )
        for kind, needs in TILES.items()
    ]


@pytest.fixture(params=_kernel_tile_kinds())
def kernel_tiles(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a kernel test once per tile kind this CPU has (``amx_kernels.tiles_here`` answers it)."""
    from packed_bert.backends import amx_kernels

    kind: str = request.param
    monkeypatch.setattr(amx_kernels, "tiles_here", lambda: kind)
    return kind
