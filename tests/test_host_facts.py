"""What a run records about its host (``harness.host_facts``) and what the submission's system
description takes from it."""

from pathlib import Path

from packed_bert.harness.host_facts import caches, cpu_mhz, host_facts, memory_bytes, runtimes, sockets
from packed_bert.harness.system_description import host_info
from packed_bert.submission.systems import UNKNOWN, system_json

CPUINFO = (
    "processor\t: 0\nphysical id\t: 0\ncpu MHz\t\t: 2599.998\n\nprocessor\t: 1\nphysical id\t: 1\ncpu MHz\t\t: 2400.0\n"
)


def fake_caches(root: Path) -> Path:
    for i, (level, kind, size, cpus) in enumerate(
        [("1", "Data", "48K", "0"), ("1", "Instruction", "64K", "0"), ("2", "Unified", "2048K", "0"),
         ("3", "Unified", "491520K", "0-1,4-5")]
    ):  # fmt: skip
        d = root / f"index{i}"
        d.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", cpus)):
            (d / name).write_text(value + "\n")
    return root


def test_facts_from_proc_and_sys(tmp_path: Path) -> None:
    assert sockets(CPUINFO) == 2 and sockets("processor\t: 0\n") is None
    assert cpu_mhz(CPUINFO) == 2599.998 and cpu_mhz("") is None
    assert memory_bytes("MemTotal:       24683772 kB\nMemFree: 1 kB\n") == 24683772 * 1024
    assert memory_bytes("") is None
    assert (
        caches(fake_caches(tmp_path / "cache"))
        == "L1d 48 KiB, L1i 64 KiB, L2 2 MiB per core; L3 480 MiB shared by 4 CPUs"
    )
    assert caches(tmp_path / "none") is None
    found = runtimes(["torch", "sim", "torch"])
    assert list(found) == ["torch"]  # only the runtimes the run used, once
    run = {"accelerator": "CPU", "devices": 1, "backend": "torch", "host_info": host_info(["torch", "sim", "torch"])}
    stack = system_json(run, "cpu", "acme", "closed", "edge")["other_software_stack"]
    assert stack.startswith("Python 3.") and "mlcommons-loadgen " in stack and stack.count("torch ") == 1
    assert "onnxruntime" not in stack


def test_the_system_description_takes_them_on_real_hardware_only() -> None:
    facts = host_facts(["torch"], cpuinfo=CPUINFO, meminfo="MemTotal: 25165824 kB\n")
    run = {
        "accelerator": "CPU",
        "devices": 1,
        "backend": "torch",
        "host_info": {"cpus": 2, "python": "3.11.7", **facts},
        "sdk": "1.5.9",
    }
    desc = system_json(run, "cpu", "acme", "closed", "edge")
    assert desc["host_processors_per_node"] == 2 and desc["host_memory_capacity"] == "24 GiB"
    assert desc["host_processor_frequency"] == "2600 MHz"
    assert desc["other_software_stack"].startswith("Python 3.") and desc["other_software_stack"].endswith("SDK 1.5.9")
    sim = system_json({**run, "simulated": True, "accelerator": "Cloud AI 100"}, "q1", "acme", "closed", "edge")
    assert sim["host_processors_per_node"] == UNKNOWN and sim["host_memory_capacity"] == UNKNOWN
    old = system_json({"accelerator": "CPU", "devices": 1, "backend": "torch"}, "cpu", "acme", "closed", "edge")
    assert old["host_processor_caches"] == UNKNOWN and old["other_software_stack"] == UNKNOWN
