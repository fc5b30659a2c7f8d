"""The runner's pydantic-free settings path gives RunnerSettings' answers: same values, same job id, same errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.batch_settings import RunnerSettings, parse_settings
from serving.batch.runconfig import DEFAULTS, RunConfig, RunnerSettingsError, fast_validate, validate

BASE = {"input": "/in", "output_dir": "/out"}

# Values around every rule of RunnerSettings, of every JSON type (and a few that only Python callers pass).
ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=300),
    st.sampled_from([0, 1, 10, 128, 129, 256, 257, 3600, 3601, 86_400, 86_401, 1_000_000, 1_000_001, 10_000, 10_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 3600.0, 3600.5, 86_400.0, 86_400.1, -0.0, -1.0]),
    st.sampled_from(["", "x", "10", "1.5", "true", "job-1", "-bad", "a/b", "a\\b", "a\nb", "ok\n", "é", "x" * 129]),
    st.sampled_from(["append_row", "summary_only", "debug", "info", "warning", "error", "critical", "INFO"]),
    st.dictionaries(st.sampled_from(["A", "B"]), st.one_of(st.text(max_size=3), st.integers()), max_size=2),
    st.lists(st.integers(), max_size=2),
)
FIELDS = list(DEFAULTS)
INTS = {
    "mini_batch_size": (1, 1_000_000),
    "max_concurrency_per_instance": (1, 256),
    "instance_count": (1, 10_000),
    "max_retries": (0, 100),
    "error_threshold": (-1, 2**40),
}
FLOATS = {"timeout": (0, 86_400), "progress_interval": (0, 3600), "drain_timeout": (0, 3600)}
# Mostly values near each field's own rules, sometimes anything.
NEAR = {
    **{k: st.one_of(st.integers(lo, hi), st.sampled_from([lo - 1, lo, hi, hi + 1])) for k, (lo, hi) in INTS.items()},
    **{
        k: st.one_of(st.floats(lo, hi), st.integers(lo, hi), st.sampled_from([lo - 1, lo, hi, hi + 0.5]))
        for k, (lo, hi) in FLOATS.items()
    },
    "job_id": st.one_of(
        st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}", fullmatch=True), st.text(max_size=130)
    ),
    "input": st.one_of(st.text(min_size=1, max_size=3), st.just("")),
    "output_dir": st.text(max_size=3),
    "output_file_name": st.text(alphabet="ab/\\\n.", max_size=4),
    "output_action": st.sampled_from(["append_row", "summary_only", "Append_row"]),
    "logging_level": st.sampled_from(["debug", "info", "warning", "error", "critical", "INFO"]),
    "overwrite": st.booleans(),
    "entry_script": st.one_of(st.none(), st.text(max_size=3)),
    "model_dir": st.one_of(st.none(), st.text(max_size=3)),
    "environment_variables": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
}
SETTINGS = st.lists(st.sampled_from([*NEAR] * 4 + ["unknown"]), unique=True, max_size=7).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.one_of(*[NEAR[k]] * 8, ANY) if k in NEAR else ANY for k in keys})
)


def test_fields_and_defaults_match_the_model():
    assert list(RunnerSettings.model_fields) == FIELDS
    model = RunnerSettings(**BASE)
    assert RunConfig(**BASE).as_dict() == model.model_dump()


@settings(max_examples=600, deadline=None)
@given(SETTINGS, st.sampled_from([False] * 5 + [True]))
def test_fast_path_never_disagrees_with_the_model(extra, drop_required):
    data = {**({} if drop_required else BASE), **extra}
    try:
        expected = parse_settings(data, "s.json")
    except RunnerSettingsError as e:
        assert fast_validate(data) is None
        with pytest.raises(RunnerSettingsError) as got:
            validate(data, "s.json")
        assert str(got.value) == str(e)
        return
    fast = fast_validate(data)
    if fast is not None:
        assert fast.as_dict() == expected.model_dump()
    got_config = validate(data, "s.json")
    assert got_config.as_dict() == expected.model_dump()
    assert got_config.resolved_job_id() == expected.resolved_job_id()
    assert (got_config.output_path, got_config.summary_path, got_config.state_dir) == (
        expected.output_path,
        expected.summary_path,
        expected.state_dir,
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({**BASE, "mini_batch_size": 7, "timeout": 2, "environment_variables": {"A": "1"}}, id="typical"),
        pytest.param({**BASE, "job_id": "bench", "max_concurrency_per_instance": 4}, id="job-id"),
    ],
)
def test_typical_settings_take_the_fast_path(data):
    assert fast_validate(data) is not None


def test_runner_imports_no_pydantic_for_valid_settings():
    code = (
        "import sys; from serving.batch import runner; "
        "runner.load_run_config(None, {'input': '/in', 'output_dir': '/out', 'mini_batch_size': 3}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pandas', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
