"""The MLflow fast path (serving.mlflow_native): the same answers as pyfunc, byte for byte, on models and edge inputs.

Every body is sent to two scorers over the same model: ours as it runs (native predict where safe) and the same
scorer with the fast path removed (pyfunc for every request). Status and body bytes must be equal.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_helpers import make_client

pytest.importorskip("sklearn")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    import mlflow.pyfunc

# pyfunc hands scikit-learn a DataFrame for a model fitted on an array, which warns; a server does not turn warnings
# into errors, so neither does this comparison.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    features = np.vstack([rng.normal(c, 0.3, size=(40, 4)) for c in centers])
    labels = np.repeat([0, 1, 2], 40)
    target = features @ np.array([0.5, -1.25, 2.0, 0.1]) + 0.3
    return pd.DataFrame(features, columns=COLUMNS), labels, target


def _save(path: Path, flavour: str, model, frame: pd.DataFrame, **kwargs) -> Path:
    from mlflow.models import infer_signature

    signature = infer_signature(frame, np.zeros(len(frame)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if flavour == "sklearn":
            mlflow_sklearn.save_model(
                model,
                str(path),
                signature=signature,
                input_example=frame[:3],
                serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                pip_requirements=[],
                **kwargs,
            )
        elif flavour == "lightgbm":
            import mlflow.lightgbm

            mlflow.lightgbm.save_model(
                model, str(path), signature=signature, input_example=frame[:3], pip_requirements=[], **kwargs
            )
        else:
            import mlflow.xgboost

            mlflow.xgboost.save_model(
                model, str(path), signature=signature, input_example=frame[:3], pip_requirements=[], **kwargs
            )
    return path


def _models(root: Path) -> dict[str, Path]:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, labels, target = _data()
    array = frame.to_numpy()
    out = {
        "logreg-array": _save(root / "a", "sklearn", LogisticRegression(max_iter=500).fit(array, labels), frame),
        "logreg-frame": _save(root / "b", "sklearn", LogisticRegression(max_iter=500).fit(frame, labels), frame),
        "proba": _save(
            root / "c",
            "sklearn",
            LogisticRegression(max_iter=500).fit(array, labels),
            frame,
            pyfunc_predict_fn="predict_proba",
        ),
        "ridge": _save(root / "d", "sklearn", Ridge(alpha=0.3).fit(array, target), frame),
        "pipeline": _save(
            root / "e", "sklearn", make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, labels), frame
        ),
    }
    try:
        import lightgbm
    except ImportError:
        pass
    else:
        booster = lightgbm.train(
            {"objective": "regression", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5},
            lightgbm.Dataset(array, target),
            num_boost_round=15,
        )
        out["lgbm-booster"] = _save(root / "f", "lightgbm", booster, frame)
        # LightGBM's scikit-learn API models are saved by mlflow in the skops format (an extra package): not here.
    try:
        import xgboost
    except ImportError:
        return out
    out["xgb-booster"] = _save(  # fitted on an array: the booster has no feature names
        root / "g",
        "xgboost",
        xgboost.train({"max_depth": 3}, xgboost.DMatrix(array, target), num_boost_round=15),
        frame,
    )
    softprob = xgboost.train(  # feature names equal to the signature's columns; one probability per class
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgboost.DMatrix(array, labels, feature_names=COLUMNS),
        num_boost_round=10,
    )
    out["xgb-softprob"] = _save(root / "h", "xgboost", softprob, frame)
    linear = xgboost.train({"booster": "gblinear"}, xgboost.DMatrix(array, target), num_boost_round=10)
    out["xgb-linear"] = _save(root / "i", "xgboost", linear, frame)
    dart = xgboost.train({"booster": "dart", "rate_drop": 0.3, "max_depth": 3}, xgboost.DMatrix(array, target), 10)
    out["xgb-dart"] = _save(root / "l", "xgboost", dart, frame)
    classifier = xgboost.XGBClassifier(n_estimators=12, max_depth=3).fit(frame, labels)  # pyfunc answers predict()
    out["xgb-classifier"] = _save(root / "j", "xgboost", classifier, frame)
    regressor = xgboost.XGBRegressor(n_estimators=12, max_depth=3).fit(array, target)
    out["xgb-regressor"] = _save(root / "k", "xgboost", regressor, frame)
    return out


XGBOOST_MODELS = ["xgb-booster", "xgb-softprob", "xgb-linear", "xgb-dart", "xgb-classifier", "xgb-regressor"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return _models(tmp_path_factory.mktemp("native-models"))


@pytest.fixture(scope="module")
def pairs(models: dict[str, Path], tmp_path_factory):
    """Per model: (fast client, its scorer, pyfunc-only client)."""
    app_root = tmp_path_factory.mktemp("app")
    out = {}
    scorers = []
    for name, path in models.items():
        env = {"AML_APP_ROOT": str(app_root), "AZUREML_MODEL_DIR": str(path)}
        fast, fast_scorer = make_client(env)
        slow, slow_scorer = make_client(env)
        slow_scorer._native = None  # the pyfunc path for every request
        scorers += [fast_scorer, slow_scorer]
        out[name] = (fast, fast_scorer, slow)
    yield out
    for scorer in scorers:
        scorer.close()


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
rng = np.random.default_rng(3)
MANY = (rng.normal(5.0, 2.0, size=(300, 4))).round(6).tolist()


def split(rows, **extra):
    return {"input_data": {"columns": COLUMNS, "data": rows, **extra}}


FAST_BODIES = [
    pytest.param(split(ROWS), id="input-data"),
    pytest.param(split(ROWS, index=[4, 5, 6]), id="input-data-index"),
    pytest.param({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, id="dataframe-split"),
    pytest.param({"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]}, id="records"),
    pytest.param(
        {"dataframe_records": [dict(zip(reversed(COLUMNS), reversed(r), strict=True)) for r in ROWS]},
        id="records-other-key-order",
    ),
    pytest.param(split([[1e308, -1e308, 5e-324, -0.0]]), id="extremes"),
    pytest.param(split([[0.0, 0.0, 0.0, 0.0]]), id="zeros"),
    pytest.param(split(MANY), id="300-rows"),
]
SLOW_BODIES = [
    pytest.param(split([[5, 3, 1, 0]]), id="ints"),
    pytest.param(split([[5, 3.5, 1.4, 0.2]]), id="mixed-int-float"),
    pytest.param(split([[True, 3.5, 1.4, 0.2]]), id="bool"),
    pytest.param(split([["5.1", 3.5, 1.4, 0.2]]), id="string"),
    pytest.param(split([[None, 3.5, 1.4, 0.2]]), id="null"),
    pytest.param(split([]), id="no-rows"),
    pytest.param(split([[5.1, 3.5, 1.4]]), id="short-row"),
    pytest.param(split([[5.1, 3.5, 1.4, 0.2, 9.9]]), id="long-row"),
    pytest.param({"input_data": {"columns": COLUMNS[:3], "data": [[5.1, 3.5, 1.4]]}}, id="missing-column"),
    pytest.param({"input_data": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in ROWS]}}, id="reordered"),
    pytest.param({"input_data": {"columns": [*COLUMNS, "x"], "data": [[*r, 1.0] for r in ROWS]}}, id="extra-column"),
    pytest.param(split(ROWS, index=[1]), id="index-wrong-length"),
    pytest.param({**split(ROWS), "params": {"a": 1}}, id="params"),
    pytest.param({"dataframe_records": [{**dict(zip(COLUMNS, ROWS[0], strict=True)), "x": 1.0}]}, id="records-extra"),
    pytest.param({"dataframe_records": [dict(zip(COLUMNS[:3], ROWS[0][:3], strict=True))]}, id="records-missing"),
    pytest.param({"instances": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]}, id="instances"),
    pytest.param({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}, id="inputs"),
    pytest.param({"input_data": ROWS}, id="input-data-list"),
    pytest.param({**split(ROWS), "dataframe_split": {"columns": COLUMNS, "data": ROWS}}, id="two-formats"),
]


@pytest.mark.parametrize("body", [*FAST_BODIES, *SLOW_BODIES])
@pytest.mark.parametrize(
    "model", ["logreg-array", "logreg-frame", "proba", "ridge", "pipeline", "lgbm-booster", *XGBOOST_MODELS]
)
def test_same_answer_as_pyfunc(pairs, model: str, body: dict) -> None:
    if model not in pairs:
        pytest.skip("lightgbm or xgboost is not installed")
    fast, scorer, slow = pairs[model]
    assert scorer._native is not None, f"{model}: the fast path should be safe for this model"
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json", "x-request-id": "same"}
    got = fast.post("/score", content=content, headers=headers)
    expected = slow.post("/score", content=content, headers=headers)
    assert (got.status_code, got.content) == (expected.status_code, expected.content)


@pytest.mark.parametrize("body", FAST_BODIES)
def test_fast_bodies_take_the_native_path(pairs, body: dict) -> None:
    _, scorer, _ = pairs["logreg-array"]
    assert scorer._native.parse(json.loads(json.dumps(body))) is not None


@pytest.mark.parametrize("body", SLOW_BODIES)
def test_other_bodies_take_pyfunc(pairs, body: dict) -> None:
    _, scorer, _ = pairs["logreg-array"]
    assert scorer._native.parse(json.loads(json.dumps(body))) is None


def test_non_double_signature_stays_on_pyfunc(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    frame, labels, _ = _data()
    ints = (frame * 10).astype("int64")
    path = _save(tmp_path / "m", "sklearn", LogisticRegression(max_iter=500).fit(ints.to_numpy(), labels), ints)
    client, scorer = make_client({"AML_APP_ROOT": str(tmp_path), "AZUREML_MODEL_DIR": str(path)})
    try:
        assert scorer._native is None
        response = client.post("/score", json={"input_data": {"columns": COLUMNS, "data": [[51, 35, 14, 2]]}})
        assert response.status_code == 200
        assert response.json() == [0]  # input_data is answered as Azure's no-code scorer does (serving.mlflow_answer)
    finally:
        scorer.close()


@pytest.mark.parametrize(
    ("model", "flavour"),
    [
        ("logreg-array", "mlflow.sklearn"),
        ("xgb-softprob", "mlflow.xgboost"),
        ("xgb-classifier", "mlflow.xgboost"),
        ("lgbm-booster", "mlflow.lightgbm"),
    ],
)
def test_batched_mlflow_answers_match_pyfunc_per_request(
    server, models: dict[str, Path], tmp_path: Path, model: str, flavour: str
) -> None:
    """The real server with batching on: 200 concurrent requests of 1-3 rows, each answer equal to pyfunc's own."""
    import httpx

    if model not in models:
        pytest.skip("xgboost or lightgbm is not installed")
    path = models[model]
    env = {
        "ENDPOINTS_MAX_BATCH_SIZE": "16",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "256",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "60000",
        "ENDPOINTS_REQUEST_TIMEOUT_MS": "60000",
        "ENDPOINTS_RUN_THREADS": "1",
        "AML_APP_ROOT": str(tmp_path),
    }
    process = server(["--model-dir", str(path)], env)
    process.wait_ready()
    pyfunc = mlflow.pyfunc.load_model(str(path))
    generator = np.random.default_rng(11)
    bodies = []
    for i in range(200):
        rows = generator.normal(5.0, 2.0, size=(1 + i % 3, 4)).round(4).tolist()
        bodies.append(split(rows))

    async def go() -> list:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=process.url, timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(client.post("/score", json=b, headers={"x-request-id": f"m{i}"}) for i, b in enumerate(bodies))
            )

    responses = asyncio.run(go())
    for i, (body, response) in enumerate(zip(bodies, responses, strict=True)):
        expected = pyfunc.predict(pd.DataFrame(body["input_data"]["data"], columns=COLUMNS)).tolist()
        assert response.status_code == 200, response.text
        assert response.json() == expected  # input_data: the bare predictions, as Azure answers
        assert response.headers["x-request-id"] == f"m{i}"
    text = httpx.get(f"{process.url}/metrics", timeout=10).text
    assert "endpoints_batch_size_sum 200.0" in text
    assert f"MLflow model: native {flavour} predict on arrays" in process.log


def test_batched_xgboost_value_beyond_float32_fails_its_request_only(
    server, models: dict[str, Path], tmp_path: Path
) -> None:
    """A Booster refuses 1e308 (beyond float32) as pyfunc does: those requests fail, their batch-mates are answered."""
    import httpx

    if "xgb-booster" not in models:
        pytest.skip("xgboost is not installed")
    path = models["xgb-booster"]
    env = {
        "ENDPOINTS_MAX_BATCH_SIZE": "16",
        "ENDPOINTS_MAX_CONCURRENT_REQUESTS": "128",
        "ENDPOINTS_MAX_QUEUE_WAIT_MS": "60000",
        "ENDPOINTS_REQUEST_TIMEOUT_MS": "60000",
        "ENDPOINTS_RUN_THREADS": "1",
        "AML_APP_ROOT": str(tmp_path),
    }
    process = server(["--model-dir", str(path)], env)
    process.wait_ready()
    pyfunc = mlflow.pyfunc.load_model(str(path))
    generator = np.random.default_rng(5)
    poisoned = {7, 30, 31, 59}
    bodies = []
    for i in range(60):
        rows = generator.normal(5.0, 2.0, size=(2, 4)).round(4).tolist()
        if i in poisoned:
            rows[1][2] = 1e308
        bodies.append(split(rows))

    async def go() -> list:
        async with httpx.AsyncClient(base_url=process.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/score", json=b) for b in bodies))

    responses = asyncio.run(go())
    for i, (body, response) in enumerate(zip(bodies, responses, strict=True)):
        if i in poisoned:
            assert (response.status_code, response.json()) == (
                424,
                {"error": "An unexpected error occurred in the model. Check the logs for more info."},
            )
        else:
            expected = pyfunc.predict(pd.DataFrame(body["input_data"]["data"], columns=COLUMNS)).tolist()
            assert (response.status_code, response.json()) == (200, expected)
    assert "Input data contains `inf` or a value too large" in process.log


def test_xgboost_classifier_answers_its_labels(pairs, models: dict[str, Path]) -> None:
    """pyfunc of an XGBClassifier answers predict() (class labels), not predict_proba(); so does the fast path."""
    if "xgb-classifier" not in pairs:
        pytest.skip("xgboost is not installed")
    import mlflow.xgboost

    fast, scorer, _ = pairs["xgb-classifier"]
    classifier = mlflow.xgboost.load_model(str(models["xgb-classifier"]))
    labels = classifier.predict(pd.DataFrame(MANY, columns=COLUMNS)).tolist()
    assert scorer._native.flavour == "mlflow.xgboost"
    response = fast.post("/score", json={"dataframe_split": {"columns": COLUMNS, "data": MANY}})
    assert response.status_code == 200
    assert response.json() == {"predictions": labels}
    assert set(labels) == {0, 1, 2}


_THREADS_PROBE = """
import json, os, sys, threading
import numpy as np, pandas as pd, mlflow.pyfunc
from serving.mlflow_native import NativeTabular

model = mlflow.pyfunc.load_model(sys.argv[1])
native = NativeTabular.from_pyfunc(model)
assert native is not None and native.flavour == "mlflow.lightgbm"
rows = np.asfortranarray(np.arange(8.0).reshape(2, 4) / 3)
counts = {}

def threads():
    return len(os.listdir("/proc/self/task"))

def run():  # a fresh thread, as the server's run thread: OpenMP starts a team per calling thread
    before = threads()
    for _ in range(3):
        native.predict(rows)
        model.predict(pd.DataFrame(rows, columns=native.names))  # pyfunc (the fallback path)
    counts["served"] = threads() - before
    model.get_raw_model().predict(rows, num_threads=0)  # LightGBM's default: the OpenMP team
    counts["default"] = threads() - before

thread = threading.Thread(target=run)
thread.start()
thread.join()
print(json.dumps(counts))
"""


def test_lightgbm_predicts_on_the_calling_thread_alone(models: dict[str, Path]) -> None:
    """No OpenMP team per request: the native path and pyfunc's fallback predict with one thread.

    The control call (LightGBM's default thread count) shows that a team would be seen: ``OMP_NUM_THREADS=4`` makes
    that team four threads whatever the machine's core count.
    """
    import os
    import subprocess
    import sys

    if "lgbm-booster" not in models:
        pytest.skip("lightgbm is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "4", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_PROBE, str(models["lgbm-booster"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["default"] >= 3, counts  # the control: LightGBM's own team appeared
    assert counts["served"] == 0, counts


def _xgboost_refused(root: Path) -> dict[str, tuple[Path, str]]:
    """XGBoost models the fast path must leave to pyfunc, each with the reason it logs."""
    xgboost = pytest.importorskip("xgboost")
    frame, labels, target = _data()
    array = frame.to_numpy()
    codes = np.column_stack([labels.astype(np.float64), array[:, 1:]])  # column 0 a category code
    categorical = xgboost.train(
        {"max_depth": 2},
        xgboost.DMatrix(codes, target, feature_types=["c", "q", "q", "q"], enable_categorical=True),
        num_boost_round=5,
    )
    other_names = xgboost.train(
        {"max_depth": 2}, xgboost.DMatrix(array, target, feature_names=["a", "b", "c", "d"]), num_boost_round=5
    )
    with_category = frame.assign(sepal_length=pd.Categorical(labels))
    sklearn_api = xgboost.XGBRegressor(n_estimators=5, enable_categorical=True).fit(with_category, target)
    return {
        "categorical": (
            _save(root / "cat", "xgboost", categorical, frame),
            "MLflow model: pyfunc path (the XGBoost model has categorical features)",
        ),
        "other-names": (
            _save(root / "names", "xgboost", other_names, frame),
            "MLflow model: pyfunc path (the XGBoost model's feature names ['a', 'b', 'c', 'd'] are not the "
            f"signature's {COLUMNS})",
        ),
        "sklearn-api-categorical": (  # saved with the signature of all doubles (the frame's)
            _save(root / "sklearn-api", "xgboost", sklearn_api, frame),
            "MLflow model: pyfunc path (the XGBoost model has categorical features)",
        ),
    }


@pytest.mark.parametrize("case", ["categorical", "other-names", "sklearn-api-categorical"])
def test_xgboost_models_the_fast_path_leaves_to_pyfunc(tmp_path: Path, caplog, case: str) -> None:
    path, reason = _xgboost_refused(tmp_path)[case]
    env = {"AML_APP_ROOT": str(tmp_path), "AZUREML_MODEL_DIR": str(path)}
    with caplog.at_level("INFO", logger="serving.mlflow"):
        fast, fast_scorer = make_client(env)
    slow, slow_scorer = make_client(env)
    slow_scorer._native = None
    try:
        assert fast_scorer._native is None
        assert reason in caplog.messages
        content = json.dumps(split([[1.0, 3.5, 1.4, 0.2], [2.0, 2.9, 4.3, 1.3]])).encode()
        headers = {"content-type": "application/json", "x-request-id": "same"}
        got = fast.post("/score", content=content, headers=headers)
        expected = slow.post("/score", content=content, headers=headers)
        assert (got.status_code, got.content) == (expected.status_code, expected.content)
        # pyfunc answers the categorical booster; it fails every request (424) of the model whose feature names
        # differ (xgboost's validation) and of the one that wants a pandas category column.
        assert got.status_code == {"categorical": 200, "other-names": 424, "sklearn-api-categorical": 424}[case]
    finally:
        fast_scorer.close()
        slow_scorer.close()


def test_pytorch_models_stay_on_pyfunc_with_the_reason(tmp_path: Path) -> None:
    """The decision for mlflow.pytorch comes from the MLmodel file's loader; torch itself is not needed for it."""
    from mlflow.models import Model

    from serving.mlflow_native import refusal

    model = Model()
    model.add_flavor("python_function", loader_module="mlflow.pytorch", data="data", python_version="3.11")
    model.add_flavor("pytorch", model_data="data", pytorch_version="2.5.0")
    model.save(str(tmp_path / "MLmodel"))
    loader = Model.load(str(tmp_path / "MLmodel")).flavors["python_function"]["loader_module"]
    assert refusal(loader) == (
        "flavour mlflow.pytorch: not verified: torch is not installed where this server is built and tested (the "
        "PyPI wheel pulls several GB of CUDA wheels), so a native forward pass cannot be proven to give pyfunc's "
        "answers (a DataFrame of the float32 output, indexed like the input)"
    )
    assert refusal("mlflow.pyfunc.model") == "flavour mlflow.pyfunc.model has no native fast path"
    assert refusal("mlflow.xgboost") is None
