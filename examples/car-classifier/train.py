"""Train the example's two models on synthetic car photos; write the committed sample photos.

    python examples/car-classifier/train.py            # train both models if missing
    python examples/car-classifier/train.py --force    # retrain
    python examples/car-classifier/train.py --samples  # rewrite samples/ (photos + request.json)

"alice" (the current model) is scikit-learn logistic regression; "bob" (the challenger) is LightGBM
gradient boosting. Both predict the body type and the paint color from the same features
(``code/features.py``). Deterministic: the same seeds give the same photos and the same models.
Takes 10-35 s on 2 cores (more when the machine is busy).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "code"))
sys.path.insert(0, str(HERE))

import carsynth  # noqa: E402
import features  # noqa: E402

TRAIN_SEED, TEST_SEED, SAMPLE_SEED = 1, 2, 3
N_TRAIN, N_TEST = 1200, 240
MARKER = ".trained"
SAMPLES = [("sedan", "red"), ("suv", "blue"), ("truck", "yellow"), ("van", "white")]


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = list(carsynth.dataset(n, seed))
    x = features.feature_matrix([r[0] for r in rows])
    return x, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])


def train_alice(out: Path, x: np.ndarray, y_type: np.ndarray, y_color: np.ndarray) -> dict[str, object]:
    """scikit-learn: one standardised logistic regression per head, saved with joblib."""
    import joblib
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    heads = {}
    for head, y in (("type", y_type), ("color", y_color)):
        heads[head] = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)).fit(x, y)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(heads, out / "model.joblib")
    return {"library": "scikit-learn", "version": sklearn.__version__, "heads": heads}


def train_bob(out: Path, x: np.ndarray, y_type: np.ndarray, y_color: np.ndarray) -> dict[str, object]:
    """LightGBM: one multiclass booster per head, saved in LightGBM's own text format (no pickle)."""
    import lightgbm as lgb

    out.mkdir(parents=True, exist_ok=True)
    labels: dict[str, list[str]] = {}
    heads = {}
    for head, y in (("type", y_type), ("color", y_color)):
        classes = sorted(set(y.tolist()))
        labels[head] = classes
        params = {
            "objective": "multiclass",
            "num_class": len(classes),
            "learning_rate": 0.3,
            "max_bin": 63,
            "num_leaves": 15,
            "feature_fraction": 0.3,
            "min_data_in_leaf": 10,
            "num_threads": 2,
            "deterministic": True,
            "force_row_wise": True,
            "seed": 7,
            "verbose": -1,
        }
        target = np.array([classes.index(v) for v in y])
        booster = lgb.train(params, lgb.Dataset(x, label=target), num_boost_round=30)
        booster.save_model(str(out / f"{head}.lgb.txt"))
        heads[head] = booster
    (out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    return {"library": "lightgbm", "version": lgb.__version__, "heads": heads, "labels": labels}


def _accuracy(name: str, info: dict[str, object], x: np.ndarray, y_type: np.ndarray, y_color: np.ndarray) -> str:
    heads = info["heads"]
    scores = []
    for head, y in (("type", y_type), ("color", y_color)):
        model = heads[head]  # type: ignore[index]
        # LightGBM boosters answer class probabilities; scikit-learn pipelines answer labels.
        is_booster = name == "bob"
        pred = np.array(info["labels"][head])[model.predict(x).argmax(axis=1)] if is_booster else model.predict(x)  # type: ignore[index]
        scores.append(f"{head} {np.mean(pred == y):.1%}")
    return f"{name} ({info['library']} {info['version']}): held-out accuracy " + ", ".join(scores)


def write_samples() -> None:
    """Write a few sample photos and a JSON request (base64) for ``endpoints invoke``."""
    rng = np.random.default_rng(SAMPLE_SEED)
    sample_dir = HERE / "samples"
    sample_dir.mkdir(exist_ok=True)
    for car_type, color in SAMPLES:
        img = carsynth.draw_car(car_type, color, rng)
        img.save(sample_dir / f"{color}-{car_type}.png", optimize=True)
        img.save(sample_dir / f"{color}-{car_type}.jpg", quality=85)
    first = sample_dir / f"{SAMPLES[0][1]}-{SAMPLES[0][0]}.jpg"
    request = {"image": base64.b64encode(first.read_bytes()).decode("ascii")}
    (sample_dir / "request.json").write_text(json.dumps(request) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Train whatever is missing (or everything with ``--force``); print held-out accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if the models exist")
    parser.add_argument("--samples", action="store_true", help="rewrite samples/ too")
    parser.add_argument("--models-dir", type=Path, default=HERE / "models", help="default: models/ next to this file")
    args = parser.parse_args(argv)
    if args.samples:
        write_samples()
        print(f"wrote {HERE / 'samples'}")
    todo = [n for n in ("alice", "bob") if args.force or not (args.models_dir / n / MARKER).exists()]
    if not todo:
        print(f"models already trained in {args.models_dir} (use --force to retrain)")
        return 0
    start = time.perf_counter()
    x, y_type, y_color = _data(N_TRAIN, TRAIN_SEED)
    xt, tt, tc = _data(N_TEST, TEST_SEED)
    trainers = {"alice": train_alice, "bob": train_bob}
    for name in todo:
        out = args.models_dir / name
        (out / MARKER).unlink(missing_ok=True)
        info = trainers[name](out, x, y_type, y_color)
        line = _accuracy(name, info, xt, tt, tc)
        (out / MARKER).write_text(line + "\n")  # written last: a half-trained folder is retrained next time
        print(line)
    print(f"trained {', '.join(todo)} in {time.perf_counter() - start:.1f} s -> {args.models_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
