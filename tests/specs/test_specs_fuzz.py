"""Whatever document a user writes, loading it either succeeds or raises SpecError with located problems."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpoints.errors import SpecError
from endpoints.loader import load_spec

FIELDS = [
    "name",
    "endpoint_name",
    "traffic",
    "mirror_traffic",
    "auth_mode",
    "model",
    "environment",
    "code_configuration",
    "instance_type",
    "instance_count",
    "request_settings",
    "scale_settings",
    "resources",
    "settings",
    "type",
    "mini_batch_size",
    "defaults",
    "$schema",
    "liveness_probe",
    "environment_variables",
    "compute",
    "bogus",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "alice",
            "azureml:m:1",
            "azureml:m@latest",
            "<X>",
            "{{ y }}",
            "kubernetes",
            "target_utilization",
            "Standard_DS3_v2",
            "pipeline",
            "model",
            "key",
            "1abc",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from([*FIELDS, "path", "min_instances"]), inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=8), values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents, raw=st.booleans(), noise=st.text(max_size=30))
def test_any_document_loads_or_raises_spec_error(tmp_path: Path, doc: object, raw: bool, noise: str) -> None:
    path = tmp_path / "spec.yml"
    text = noise if raw else yaml.safe_dump(doc, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecError as e:
        assert e.problems
        for problem in e.problems:
            assert problem.file == str(path)
            assert problem.message
