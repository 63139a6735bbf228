"""What a gRPC run sends, decided once before load: the call's path and :authority, and its
message as protobuf bytes: --body @req.pb as given; with --proto / --descriptor-set, a JSON
body encoded as the method's input type (crestline.transport.proto_json); for the Open
Inference Protocol's
ModelInfer, built from the KServe v2 JSON request the HTTP path takes (inputs' data packed
into raw_input_contents); for TF Serving's Predict, from its REST JSON request (named
"inputs" or "instances"). Raises ConfigError naming the fix."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from crestline.errors import ConfigError
from crestline.transport.proto_json import ProtoSchema

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
# KServe v2 datatypes and how raw_input_contents holds them (little-endian, row-major).
_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
           "FP32": "<f4", "FP64": "<f8"}


# Fields of a rendered HTTP/1.1 request that a gRPC call sets itself or must not carry.
_NOT_METADATA = {"host", "content-length", "content-type", "te", "connection", "keep-alive",
                 "transfer-encoding", "accept"}


@dataclass(frozen=True)
class GrpcCall:
    path: str       # /package.Service/Method
    authority: str
    message: bytes  # the serialized request message
    headers: tuple = ()


@dataclass(frozen=True)
class GrpcTarget:
    """Where a run's gRPC calls go: its :authority and, for JSON bodies, the model or the
    schema (--proto / --descriptor-set) that encodes them.
    mixed: the calls are a trace's, of several methods: the model goes only to the ones
    built from JSON (else a model for another method is refused).
    The schema encodes the methods it defines; any other method (the URL's or a record's) is
    sent as without a schema (the built-in ModelInfer / Predict JSON, else the body's bytes),
    except a JSON object body, which only a schema could encode: refused, naming what the
    schema has."""

    authority: str
    model: str | None = None
    mixed: bool = False
    schema: ProtoSchema | None = None

    def call_for(self, request: bytes, what: str = "--body") -> GrpcCall:
        """The call a rendered request stands for (crestline.engine.spec.render_request's
        bytes, for the run's one request or each trace record): its path is the method, its
        body the message (or the JSON it is built from), its other headers the metadata.
        `what` names the body in messages ("--body", or which trace record)."""
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ", 2)[1]
        check_grpc_path(target, target)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() not in _NOT_METADATA:
                headers.append((name.strip(), value.strip()))
        if self.schema is not None:
            if self.schema.defines(target):
                message = self.schema.message(target, body, None if self.mixed else self.model,
                                              what)
                return GrpcCall(target, self.authority, message, tuple(headers))
            if target not in (MODEL_INFER, PREDICT) and _is_json_object(body):
                # Sent as it is, the JSON text would go out as a garbled message: refused,
                # naming what the schema has (require raises for a method it lacks).
                if not self.mixed:
                    self.schema.require(target)
                else:
                    try:
                        self.schema.require(target, "the record's")
                    except ConfigError as exc:
                        raise ConfigError(f"{what}: {exc}") from None
        model = self.model if not self.mixed or target in (MODEL_INFER, PREDICT) else None
        return grpc_call(target, self.authority, body, model, headers)


def _is_json_object(body: bytes) -> bool:
    if body.lstrip()[:1] != b"{":
        return False
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:  # protobuf bytes can start with "{"
        return False


def check_grpc_path(path: str, url: str) -> None:
    parts = path.split("/")
    if len(parts) != 3 or parts[0] or "." not in parts[1] or not parts[2]:
        raise ConfigError(f"{url!r}: a gRPC URL names the method, grpc://HOST:PORT/package."
                          "Service/Method, e.g. grpc://127.0.0.1:8001/inference."
                          "GRPCInferenceService/ModelInfer")


def grpc_call(path: str, authority: str, body: bytes, model: str | None,
              headers=()) -> GrpcCall:
    """The call for a run. ModelInfer with a JSON body (KServe v2 inference request) or
    Predict with one (TF Serving's REST request): the model from `model` (--model), else the
    JSON's model_name; any other body is the message's protobuf bytes as they are."""
    is_json = body.lstrip()[:1] == b"{"
    if path == MODEL_INFER and is_json:
        message = kserve_request(body, model)
    elif path == PREDICT and is_json:
        message = tfserving_request(body, model)
    elif model is not None:
        raise ConfigError(f"--model {model!r} applies only to {MODEL_INFER} and {PREDICT} "
                          "with a JSON body")
    else:
        message = body
    return GrpcCall(path, authority, message, tuple(headers))


def _json(body: bytes, what: str) -> dict:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"--body is not JSON ({exc}): give a {what} request, or the request "
                          "message's protobuf bytes with --body @req.pb") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--body: a {what} request is a JSON object")
    return doc


def _model(model: str | None, doc: dict, method: str) -> str:
    name = model or doc.get("model_name")
    if not name:
        raise ConfigError(f"{method} needs the model's name: add --model NAME (the JSON request "
                          "the HTTP path takes names it in its URL)")
    return name


def _protobuf(method: str):
    try:
        if method == "Predict":
            from crestline.transport import tfserving_pb as pb
        else:
            from crestline.transport import kserve_pb as pb
    except ImportError:
        raise ConfigError(f"{method} from a JSON request needs protobuf: "
                          "pip install crestline[grpc]") from None
    return pb


def kserve_request(body: bytes, model: str | None) -> bytes:
    """A KServe v2 JSON inference request as a serialized inference.ModelInferRequest."""
    ModelInferRequest = _protobuf("ModelInfer").ModelInferRequest
    doc = _json(body, "KServe v2 inference")
    name = _model(model, doc, "ModelInfer")
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


def tfserving_request(body: bytes, model: str | None) -> bytes:
    """TF Serving's REST request ({"signature_name", "inputs": {name: values}} or
    {"instances": [{name: value}, ...]}) as a serialized tensorflow.serving.PredictRequest:
    each input a TensorProto, floats as DT_FLOAT, integers as DT_INT64, booleans as DT_BOOL
    (tensor_content, little-endian), strings as DT_STRING (string_val)."""
    pb = _protobuf("Predict")
    doc = _json(body, "TF Serving Predict")
    req = pb.PredictRequest()
    req.model_spec.name = _model(model, doc, "Predict")
    if doc.get("signature_name"):
        req.model_spec.signature_name = str(doc["signature_name"])
    inputs = doc.get("inputs")
    if inputs is None and isinstance(doc.get("instances"), list) and doc["instances"] and all(
            isinstance(row, dict) for row in doc["instances"]):
        names = list(doc["instances"][0])
        inputs = {n: [row[n] for row in doc["instances"]] for n in names}
    if not isinstance(inputs, dict) or not inputs:
        raise ConfigError("the Predict request needs named inputs: {\"inputs\": {\"NAME\": "
                          "[...]}} or {\"instances\": [{\"NAME\": ...}, ...]}")
    for name, data in inputs.items():
        t = req.inputs[name]
        arr = np.asarray(data)
        for size in arr.shape:
            t.tensor_shape.dim.add(size=size)
        if arr.dtype.kind in "US":
            t.dtype = pb.DT["DT_STRING"]
            t.string_val.extend(str(x).encode() for x in arr.reshape(-1))
            continue
        kind = {"f": ("DT_FLOAT", "<f4"), "i": ("DT_INT64", "<i8"), "u": ("DT_INT64", "<i8"),
                "b": ("DT_BOOL", "?")}.get(arr.dtype.kind)
        if kind is None:
            raise ConfigError(f"Predict input {name!r}: values of one type and shape, "
                              f"numbers, booleans or strings (got {arr.dtype})")
        t.dtype = pb.DT[kind[0]]
        t.tensor_content = arr.astype(kind[1]).tobytes()
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
