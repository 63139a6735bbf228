"""TensorFlow Serving's gRPC Predict messages, as protobuf classes.

Built from a FileDescriptorProto written out here, field for field tensorflow_serving/apis/
predict.proto and model.proto and tensorflow/core/framework/tensor.proto, tensor_shape.proto
and types.proto (the fields a Predict request uses): PredictRequest, PredictResponse,
ModelSpec, TensorProto, TensorShapeProto, DataType. In their own descriptor pool, like
crestline.transport.kserve_pb. Used only to render requests before a run.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
# tensorflow.DataType (types.proto), the values a request carries
DT = {"DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4,
      "DT_INT16": 5, "DT_INT8": 6, "DT_STRING": 7, "DT_INT64": 9, "DT_BOOL": 10,
      "DT_UINT16": 17, "DT_HALF": 19, "DT_UINT32": 22, "DT_UINT64": 23}


def _field(msg, name, number, ftype, label=_OPT, type_name=None, packed=False):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True


def _tensorflow_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="crestline/tensorflow_tensor.proto",
                                            package="tensorflow", syntax="proto3")
    enum = fd.enum_type.add(name="DataType")
    for name, number in DT.items():
        enum.value.add(name=name, number=number)
    shape = fd.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, F.TYPE_INT64)
    _field(dim, "name", 2, F.TYPE_STRING)
    _field(shape, "dim", 2, F.TYPE_MESSAGE, _REP, ".tensorflow.TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, F.TYPE_BOOL)
    t = fd.message_type.add(name="TensorProto")
    _field(t, "dtype", 1, F.TYPE_ENUM, type_name=".tensorflow.DataType")
    _field(t, "tensor_shape", 2, F.TYPE_MESSAGE, type_name=".tensorflow.TensorShapeProto")
    _field(t, "version_number", 3, F.TYPE_INT32)
    _field(t, "tensor_content", 4, F.TYPE_BYTES)
    for name, number, ftype in (("float_val", 5, F.TYPE_FLOAT), ("double_val", 6, F.TYPE_DOUBLE),
                                ("int_val", 7, F.TYPE_INT32), ("int64_val", 10, F.TYPE_INT64),
                                ("bool_val", 11, F.TYPE_BOOL), ("half_val", 13, F.TYPE_INT32)):
        _field(t, name, number, ftype, _REP, packed=True)
    _field(t, "string_val", 8, F.TYPE_BYTES, _REP)
    return fd


def _serving_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="crestline/tensorflow_serving_predict.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["crestline/tensorflow_tensor.proto",
                                     "google/protobuf/wrappers.proto"])
    spec = fd.message_type.add(name="ModelSpec")
    _field(spec, "name", 1, F.TYPE_STRING)
    _field(spec, "version", 2, F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
    _field(spec, "signature_name", 3, F.TYPE_STRING)
    for name, number, map_field in (("PredictRequest", 2, "inputs"),
                                    ("PredictResponse", 1, "outputs")):
        msg = fd.message_type.add(name=name)
        entry = msg.nested_type.add(name=map_field.capitalize() + "Entry")
        entry.options.map_entry = True
        _field(entry, "key", 1, F.TYPE_STRING)
        _field(entry, "value", 2, F.TYPE_MESSAGE, type_name=".tensorflow.TensorProto")
        _field(msg, map_field, number, F.TYPE_MESSAGE, _REP,
               f".tensorflow.serving.{name}.{entry.name}")
        _field(msg, "model_spec", 1 if number == 2 else 2, F.TYPE_MESSAGE,
               type_name=".tensorflow.serving.ModelSpec")
        if name == "PredictRequest":
            _field(msg, "output_filter", 3, F.TYPE_STRING, _REP)
    svc = fd.service.add(name="PredictionService")
    svc.method.add(name="Predict", input_type=".tensorflow.serving.PredictRequest",
                   output_type=".tensorflow.serving.PredictResponse")
    return fd


POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
POOL.Add(_tensorflow_file())
POOL.Add(_serving_file())
PredictRequest = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("tensorflow.serving.PredictRequest"))
PredictResponse = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("tensorflow.serving.PredictResponse"))
