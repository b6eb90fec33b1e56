from pathlib import Path

import pytest

from packed_bert.errors import UserError
from packed_bert.harness import settings as st


def test_user_conf_from_flags_is_validated_and_loaded(tmp_path: Path) -> None:
    e = st.user_conf_entries("Offline", "test", 670.0, 100, {"min_duration": "2000"})
    assert e["bert.Offline.target_qps"] == "670"
    assert e["bert.Offline.min_duration"] == "2000"  # override wins over the test preset
    assert e["bert.Offline.performance_sample_count_override"] == "100"
    path = tmp_path / "user.conf"
    path.write_text(st.render_user_conf(e, "header"))
    loaded = st.load_test_settings(path, "Offline", "performance")
    assert loaded.effective["offline_expected_qps"] == 670.0
    assert loaded.effective["min_duration_ms"] == 2000
    assert loaded.effective["performance_sample_count_override"] == 100


def test_builtin_mlperf_conf_applies_on_every_load(tmp_path: Path) -> None:
    # LoadGen applies its built-in mlperf.conf only on the first FromConfig of a process;
    # the harness loads it explicitly, so the Server bound is 130 ms in every run.
    path = tmp_path / "user.conf"
    for scenario in ("Offline", "Server", "Server", "SingleStream"):
        path.write_text(st.render_user_conf(st.user_conf_entries(scenario, "valid", 10.0, None)))
        eff = st.load_test_settings(path, scenario, "performance").effective
        assert eff["min_duration_ms"] == 600_000
        if scenario == "Server":
            assert eff["server_target_latency_ms"] == 130.0
            assert eff["server_target_qps"] == 10.0
        if scenario == "SingleStream":
            assert eff["single_stream_expected_latency_ms"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_duraton": "5"}, "not a LoadGen setting"),
        ({"target_qps": "-3"}, "must be a finite number > 0"),
        ({"target_latency_percentile": "150"}, "percentile"),
        ({"min_duration": "1.5"}, "integer"),
        ({"min_duration": "9000", "max_duration": "100"}, "below min_duration"),
        ({"accuracy_log_probability": "2"}, "probability"),
    ],
)
def test_unknown_key_or_impossible_value_is_an_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        st.user_conf_entries("Offline", "test", 10.0, None, overrides)


def test_target_qps_and_setting_syntax() -> None:
    with pytest.raises(UserError, match="target-qps"):
        st.user_conf_entries("Server", "test", 0.0, None)
    with pytest.raises(UserError, match="KEY=VALUE"):
        st.parse_setting("min_duration")
    assert st.parse_setting(" min_duration = 10 ") == ("min_duration", "10")
