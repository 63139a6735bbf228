"""What a gRPC run sends, decided once before load: the call's path and :authority, and its
message as protobuf bytes: --body @req.pb as given, or, for the Open Inference Protocol's
ModelInfer, built from the KServe v2 JSON request the HTTP path takes (inputs' data packed
into raw_input_contents). Raises ConfigError naming the fix."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from crestline.errors import ConfigError

# KServe v2 datatypes and how raw_input_contents holds them (little-endian, row-major).
_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
           "FP32": "<f4", "FP64": "<f8"}


@dataclass(frozen=True)
class GrpcCall:
    path: str       # /package.Service/Method
    authority: str
    message: bytes  # the serialized request message
    headers: tuple = ()


def check_grpc_path(path: str, url: str) -> None:
    parts = path.split("/")
    if len(parts) != 3 or parts[0] or "." not in parts[1] or not parts[2]:
        raise ConfigError(f"{url!r}: a gRPC URL names the method, grpc://HOST:PORT/package."
                          "Service/Method, e.g. grpc://127.0.0.1:8001/inference."
                          "GRPCInferenceService/ModelInfer")


def grpc_call(path: str, authority: str, body: bytes, model: str | None,
              headers=()) -> GrpcCall:
    """The call for a run. ModelInfer with a JSON body (KServe v2 inference request): the
    model from `model` (--model) or the JSON's model_name; any other body is the message's
    protobuf bytes as they are."""
    from crestline.transport.kserve_pb import MODEL_INFER

    stripped = body.lstrip()
    if path == MODEL_INFER and stripped[:1] == b"{":
        message = kserve_request(body, model)
    elif model is not None:
        raise ConfigError(f"--model {model!r} applies only to {MODEL_INFER} with a JSON body")
    else:
        message = body
    return GrpcCall(path, authority, message, tuple(headers))


def kserve_request(body: bytes, model: str | None) -> bytes:
    """A KServe v2 JSON inference request as a serialized inference.ModelInferRequest."""
    try:
        from crestline.transport.kserve_pb import ModelInferRequest
    except ImportError:
        raise ConfigError("ModelInfer from a JSON request needs protobuf: "
                          "pip install crestline[grpc]") from None

    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"--body is not JSON ({exc}): give a KServe v2 inference request, "
                          "or the request message's protobuf bytes with --body @req.pb") from None
    name = model or doc.get("model_name")
    if not name:
        raise ConfigError("ModelInfer needs the model's name: add --model NAME (the JSON "
                          "request the HTTP path takes names it in its URL)")
    req = ModelInferRequest(model_name=name, model_version=str(doc.get("model_version", "")),
                            id=str(doc.get("id", "")))
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError("the KServe v2 request has no \"inputs\" list")
    for i, spec in enumerate(inputs):
        try:
            name, datatype, shape = spec["name"], spec["datatype"], [int(d) for d in
                                                                      spec["shape"]]
            data = spec["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"KServe v2 input {i}: needs name, datatype, shape and data "
                              f"({exc!r})") from None
        t = req.inputs.add(name=name, datatype=datatype, shape=shape)
        _copy_params(t.parameters, spec.get("parameters"))
        req.raw_input_contents.append(_raw(i, datatype, shape, data))
    for out in doc.get("outputs") or []:
        o = req.outputs.add(name=out["name"])
        _copy_params(o.parameters, out.get("parameters"))
    _copy_params(req.parameters, doc.get("parameters"))
    return req.SerializeToString()


def _raw(i: int, datatype: str, shape: list[int], data) -> bytes:
    n = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        items = list(np.array(data, dtype=object).reshape(-1))
        blobs = [x.encode() if isinstance(x, str) else bytes(x) for x in items]
        if len(blobs) != n:
            raise ConfigError(f"KServe v2 input {i}: {len(blobs)} values for shape {shape}")
        return b"".join(len(b).to_bytes(4, "little") + b for b in blobs)
    if datatype not in _DTYPES:
        raise ConfigError(f"KServe v2 input {i}: unknown datatype {datatype!r}: one of "
                          f"{', '.join(_DTYPES)}, BYTES")
    arr = np.asarray(data, dtype=_DTYPES[datatype]).reshape(-1)
    if arr.size != n:
        raise ConfigError(f"KServe v2 input {i}: {arr.size} values for shape {shape}")
    return arr.tobytes()


def _copy_params(into, params) -> None:
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            into[key].bool_param = value
        elif isinstance(value, int):
            into[key].int64_param = value
        else:
            into[key].string_param = str(value)
