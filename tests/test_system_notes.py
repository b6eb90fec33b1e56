"""The systems JSON's notes: the CPU and each model's recipe, from the runs a submission takes."""

from typing import Any

from packed_bert.submission.system_notes import hardware_note, software_note
from packed_bert.submission.systems import TEST_TREE_NOTE, UNKNOWN, system_json

INT8 = "torch 2.13.0+cpu int8 on cpu, static int8 encoder linears"
BF16 = "torch 2.13.0+cpu int8 + bf16 on cpu"


def run_system(model: str, scenario: str, detail: str, batching: str = "sorted", batch: int = 16) -> dict[str, Any]:
    return {
        "accelerator": "CPU",
        "devices": 1,
        "backend": "torch",
        "cpu_class": "amx",
        "host_info": {"cpus": 2, "cpu_generation": "family 6 model 167 stepping 1"},
        "runners": [{"name": "torch", "detail": detail}],
        "run": {"model": model, "scenario": scenario, "batching": batching, "batch_size": batch},
    }


def test_each_model_gets_its_recipe_and_batching_once() -> None:
    taken = [
        run_system("bert-99.9", "Offline", BF16),
        run_system("bert-99", "Offline", INT8),
        run_system("bert-99", "SingleStream", INT8, batch=1),
        run_system("bert-99", "Server", INT8, batching="packed", batch=4),
    ]
    note = software_note(taken)
    assert note == (
        f"bert-99: {INT8}; Offline sorted batches of 16; SingleStream one sample at a time; Server packed batches of 4"
        f" | bert-99.9: {BF16}; Offline sorted batches of 16"
    )
    assert software_note([{"accelerator": "CPU"}]) is None  # a run that recorded neither


def test_the_cpu_is_named_with_its_class() -> None:
    assert hardware_note(run_system("bert-99", "Offline", INT8)) == (
        "CPU family 6 model 167 stepping 1; packed-bert CPU class amx"
    )
    assert hardware_note({"host_info": {}}) is None


def test_the_systems_json_carries_both_notes() -> None:
    taken = [run_system("bert-99", "Offline", INT8), run_system("bert-99.9", "SingleStream", BF16, batch=1)]
    desc = system_json(taken[0], "cpu", "acme", "closed", "edge", taken=taken)
    assert desc["hw_notes"].startswith("CPU family 6 model 167") and desc["sw_notes"] == software_note(taken)
    test = system_json(taken[0], "cpu", "acme", "closed", "edge", test_tree=True, taken=taken)
    assert test["sw_notes"] == f"{TEST_TREE_NOTE}; {software_note(taken)}"
    sim = system_json({**taken[0], "simulated": True}, "q1", "acme", "closed", "edge", taken=taken)
    assert sim["sw_notes"].startswith("simulated accelerator") and "bert-99: " in sim["sw_notes"]
    assert sim["hw_notes"] == UNKNOWN  # the machine that ran a simulation is not the system
    bare = system_json({"accelerator": "CPU", "devices": 1}, "cpu", "acme", "closed", "edge")
    assert bare["sw_notes"] == UNKNOWN and bare["hw_notes"] == UNKNOWN
