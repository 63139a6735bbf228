#!/usr/bin/env python3
"""A scikit-learn model repository for MLServer (bench/verdict_bench.py's `mlserver` target).

Trains a small RandomForestClassifier on generated data (no download: the data and the model
are made here, from a seed), saves it with joblib and writes what `mlserver start DIR` reads:

    DIR/settings.json                   server: host, HTTP / gRPC / metrics ports
    DIR/clf/model-settings.json         model `clf`, mlserver_sklearn.SKLearnModel
    DIR/clf/model.joblib
    DIR/request.json                    one V2 inference request: FP32 [1, 16]

    python bench/targets/sklearn_model.py DIR --http-port 8080 --grpc-port 8081 --metrics-port 8082
    mlserver start DIR
    curl -X POST -H 'Content-Type: application/json' --data @DIR/request.json \\
        http://127.0.0.1:8080/v2/models/clf/infer
"""

from __future__ import annotations

import argparse
import json
import os
import sys

FEATURES = 16
MODEL_NAME = "clf"


def write_repository(root: str, http_port: int, grpc_port: int, metrics_port: int,
                     trees: int = 50, depth: int = 8, seed: int = 0,
                     parallel_workers: int = 0) -> dict:
    """Train, save and configure; returns {"model", "path", "request", "sklearn"}."""
    import joblib
    import numpy as np
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4000, FEATURES)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2) > 0).astype(np.int64)
    model = RandomForestClassifier(n_estimators=trees, max_depth=depth, random_state=seed,
                                   n_jobs=1).fit(x, y)
    mdir = os.path.join(root, MODEL_NAME)
    os.makedirs(mdir, exist_ok=True)
    joblib.dump(model, os.path.join(mdir, "model.joblib"))
    with open(os.path.join(mdir, "model-settings.json"), "w") as f:
        json.dump({"name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                   "parameters": {"uri": "./model.joblib"}}, f)
    # MLServer's defaults except where it listens, its log (no per-request access log: debug
    # off) and parallel_workers: its default (1) runs inference in a worker process whose start
    # calls asyncio.get_event_loop() with no loop set, which the uvloop in crestline's venv
    # (0.23) turns into "RuntimeError: There is no current event loop": the model never
    # loads. 0 runs inference on the server's own event loop, in one process.
    with open(os.path.join(root, "settings.json"), "w") as f:
        json.dump({"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
                   "metrics_port": metrics_port, "parallel_workers": parallel_workers,
                   "debug": False}, f)
    req = {"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32",
                       "data": [round(float(v), 4) for v in rng.standard_normal(FEATURES)]}]}
    req_path = os.path.join(root, "request.json")
    with open(req_path, "w") as f:
        json.dump(req, f)
    return {"model": MODEL_NAME, "path": f"/v2/models/{MODEL_NAME}/infer", "request": req_path,
            "sklearn": sklearn.__version__,
            "estimator": f"RandomForestClassifier(n_estimators={trees}, max_depth={depth})"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--grpc-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8082)
    p.add_argument("--trees", type=int, default=50)
    p.add_argument("--parallel-workers", type=int, default=0)
    a = p.parse_args(argv)
    info = write_repository(a.dir, a.http_port, a.grpc_port, a.metrics_port, trees=a.trees,
                            parallel_workers=a.parallel_workers)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
