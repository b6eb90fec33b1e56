"""The expected QPS counts every device of the run: a system file's target is for its own
devices, so a run on a cluster of more (or fewer) expects proportionally more (or less)."""

from packed_bert.harness.config import RunConfig
from packed_bert.harness.plan import plan_run, scaled_for_devices
from packed_bert.terms import Scenario


def test_a_run_on_more_devices_expects_proportionally_more() -> None:
    plan = plan_run(RunConfig(sut="r282_z93_q8"))  # 8 cards, Offline target 5,360
    assert scaled_for_devices(plan, 8) is plan
    twice = scaled_for_devices(plan, 16)
    assert twice.target_qps == 2 * plan.target_qps
    assert twice.user_conf["bert.Offline.target_qps"] == str(int(2 * plan.target_qps))
    assert scaled_for_devices(plan, 4).target_qps == plan.target_qps / 2


def test_a_target_the_user_set_is_kept() -> None:
    given = plan_run(RunConfig(sut="r282_z93_q8", target_qps=1000.0))
    assert scaled_for_devices(given, 16).target_qps == 1000.0
    setting = plan_run(RunConfig(sut="r282_z93_q8", settings={"target_qps": "900"}))
    assert scaled_for_devices(setting, 16).target_qps == 900.0
    single = plan_run(RunConfig(sut="r282_z93_q8", scenario=Scenario.SINGLE_STREAM))
    assert scaled_for_devices(single, 16).target_qps == single.target_qps
