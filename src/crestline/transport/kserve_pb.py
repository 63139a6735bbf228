"""The Open Inference Protocol's (KServe v2) gRPC messages, as protobuf classes.

Built from a FileDescriptorProto written out here (no protoc at build time), field for field
the `inference` package of KServe's grpc_predict_v2.proto: ModelInferRequest,
ModelInferResponse, InferParameter, InferTensorContents. They live in their own descriptor
pool, so they never clash with another copy of the same protocol in the process (MLServer's,
tritonclient's). Used only to render requests before a run, never per request.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_STRING, _INT64, _BYTES, _BOOL, _MSG = F.TYPE_STRING, F.TYPE_INT64, F.TYPE_BYTES, F.TYPE_BOOL, \
    F.TYPE_MESSAGE
_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED


def _field(msg, name, number, ftype, label=_OPT, type_name=None, oneof=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _params_map(msg):
    """map<string, InferParameter> parameters = 4 (as protoc writes a map: a nested entry)."""
    entry = msg.nested_type.add(name="ParametersEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _STRING)
    _field(entry, "value", 2, _MSG, type_name=".inference.InferParameter")
    return f".{entry.name}"


def _tensor(parent, name, full_parent):
    t = parent.nested_type.add(name=name)
    _field(t, "name", 1, _STRING)
    _field(t, "datatype", 2, _STRING)
    _field(t, "shape", 3, _INT64, _REP)
    _params_map(t)
    _field(t, "parameters", 4, _MSG, _REP, f"{full_parent}.{name}.ParametersEntry")
    _field(t, "contents", 5, _MSG, type_name=".inference.InferTensorContents")


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="crestline/grpc_predict_v2.proto",
                                            package="inference", syntax="proto3")
    p = fd.message_type.add(name="InferParameter")
    p.oneof_decl.add(name="parameter_choice")
    _field(p, "bool_param", 1, _BOOL, oneof=0)
    _field(p, "int64_param", 2, _INT64, oneof=0)
    _field(p, "string_param", 3, _STRING, oneof=0)
    c = fd.message_type.add(name="InferTensorContents")
    for i, (name, ftype) in enumerate((
            ("bool_contents", _BOOL), ("int_contents", F.TYPE_INT32), ("int64_contents", _INT64),
            ("uint_contents", F.TYPE_UINT32), ("uint64_contents", F.TYPE_UINT64),
            ("fp32_contents", F.TYPE_FLOAT), ("fp64_contents", F.TYPE_DOUBLE),
            ("bytes_contents", _BYTES)), start=1):
        _field(c, name, i, ftype, _REP)
    req = fd.message_type.add(name="ModelInferRequest")
    _tensor(req, "InferInputTensor", ".inference.ModelInferRequest")
    out = req.nested_type.add(name="InferRequestedOutputTensor")
    _field(out, "name", 1, _STRING)
    _params_map(out)
    _field(out, "parameters", 2, _MSG, _REP,
           ".inference.ModelInferRequest.InferRequestedOutputTensor.ParametersEntry")
    _params_map(req)
    for name, number in (("model_name", 1), ("model_version", 2), ("id", 3)):
        _field(req, name, number, _STRING)
    _field(req, "parameters", 4, _MSG, _REP, ".inference.ModelInferRequest.ParametersEntry")
    _field(req, "inputs", 5, _MSG, _REP, ".inference.ModelInferRequest.InferInputTensor")
    _field(req, "outputs", 6, _MSG, _REP,
           ".inference.ModelInferRequest.InferRequestedOutputTensor")
    _field(req, "raw_input_contents", 7, _BYTES, _REP)
    resp = fd.message_type.add(name="ModelInferResponse")
    _tensor(resp, "InferOutputTensor", ".inference.ModelInferResponse")
    _params_map(resp)
    for name, number in (("model_name", 1), ("model_version", 2), ("id", 3)):
        _field(resp, name, number, _STRING)
    _field(resp, "parameters", 4, _MSG, _REP, ".inference.ModelInferResponse.ParametersEntry")
    _field(resp, "outputs", 5, _MSG, _REP, ".inference.ModelInferResponse.InferOutputTensor")
    _field(resp, "raw_output_contents", 6, _BYTES, _REP)
    svc = fd.service.add(name="GRPCInferenceService")
    svc.method.add(name="ModelInfer", input_type=".inference.ModelInferRequest",
                   output_type=".inference.ModelInferResponse")
    return fd


POOL = descriptor_pool.DescriptorPool()
POOL.Add(_file())
ModelInferRequest = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("inference.ModelInferRequest"))
ModelInferResponse = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("inference.ModelInferResponse"))
