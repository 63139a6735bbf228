"""gRPC against a real third-party server: MLServer's Open Inference Protocol endpoint (KServe
v2 ModelInfer), the same JSON request sent over its HTTP path and over gRPC. MLServer comes
with crestline[test] (and crestline[bench]); skipped where it is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import crestline

if os.environ.get("CI") == "true":  # CI installs crestline[test]: a skip there would hide a gap
    import hpack  # noqa: F401
    import mlserver  # noqa: F401
pytest.importorskip("mlserver")
pytest.importorskip("hpack")

MODEL = '''
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Summer(MLModel):
    """Sums each row of its one input: cheap, so the server is quick."""

    async def load(self) -> bool:
        return True

    async def predict(self, req: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(req.inputs[0])
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("sum", x.sum(axis=-1))])
'''
REQUEST = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                       "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlserver")
    (root / "summer").mkdir()
    (root / "summer" / "summer_model.py").write_text(MODEL)
    (root / "summer" / "model-settings.json").write_text(json.dumps(
        {"name": "summer", "implementation": "summer_model.Summer"}))
    ports = {"http_port": _free_port(), "grpc_port": _free_port(),
             "metrics_port": _free_port()}
    # parallel_workers 0: inference on the server's own loop (bench/targets/sklearn_model.py
    # says why: its worker processes do not start under uvloop 0.23)
    (root / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "parallel_workers": 0, "debug": False, **ports}))
    proc = subprocess.Popen([sys.executable, "-m", "mlserver.cli.main", "start", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = f"http://127.0.0.1:{ports['http_port']}/v2/models/summer/ready"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(ready, timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("MLServer did not become ready")
        time.sleep(0.3)
    yield ports
    proc.kill()
    proc.wait(timeout=10)


def test_model_infer_over_grpc_and_the_same_json_over_http(mlserver):
    body = json.dumps(REQUEST).encode()
    grpc_url = (f"grpc://127.0.0.1:{mlserver['grpc_port']}"
                "/inference.GRPCInferenceService/ModelInfer")
    d = crestline.run(grpc_url, body=body, model="summer", rate_rps=100, duration_s=1,
                      connections=1, streams=8).to_dict()
    assert d["requests"]["ok"] == 100 and d["requests"]["errors"] == 0, d["requests"]
    http_url = f"http://127.0.0.1:{mlserver['http_port']}/v2/models/summer/infer"
    d = crestline.run(http_url, method="POST", body=body, rate_rps=50, duration_s=1,
                      headers=[("Content-Type", "application/json")]).to_dict()
    assert d["requests"]["ok"] == 50


def test_unknown_model_is_a_grpc_error_kind(mlserver):
    d = crestline.run(f"grpc://127.0.0.1:{mlserver['grpc_port']}/inference."
                      "GRPCInferenceService/ModelInfer", body=json.dumps(REQUEST).encode(),
                      model="nope", rate_rps=20, duration_s=1, connections=1).to_dict()
    errors = {k: v for k, v in d["requests"]["by_error"].items() if v}
    assert len(errors) == 1 and next(iter(errors)).startswith("grpc_"), errors
    assert sum(errors.values()) == 20
