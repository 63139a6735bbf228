"""A loopback gRPC server for the gRPC tests, in its own process (grpcio, the reference
implementation), with the services the tests define:

- /inference.GRPCInferenceService/ModelInfer: the Open Inference Protocol's call, parsed with
  MLServer's generated classes when MLServer is installed (else crestline's own): checks the
  model name and answers one output of --reply-bytes raw bytes;
- /tensorflow.serving.PredictionService/Predict: TF Serving's call, parsed with crestline's
  classes (no TF Serving package here): checks the model name, logs each input's dtype and
  shape, answers one output tensor;
- /test.Echo/Call: any bytes in, --reply-bytes bytes out;
- with --schema FDS (a FileDescriptorSet the test compiled), every method of its services:
  the request decoded with its input type, compared with --expect FILE.json (that JSON as the
  same type, for the methods whose input it is: a mismatch is INVALID_ARGUMENT), answered
  with an empty output message.

    python tests/grpc_server.py --port 0 [--tls CERT KEY] [--fail-every N --fail-code 14] ...

Prints "listening on HOST:PORT". --fail-every N ends every Nth call with --fail-code (a
trailers-only response: no message before it); --delay-ms holds every answer. --log FILE gets
one line per call: the method, the model, each input's name/datatype/shape and raw bytes'
length, and the request's size (for --schema methods: match=0|1 and the message as compact
JSON).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from concurrent import futures

import grpc

try:  # the protocol as another project generated it, so the test does not check itself
    from mlserver.grpc.dataplane_pb2 import ModelInferRequest, ModelInferResponse
except ImportError:
    from crestline.transport.kserve_pb import ModelInferRequest, ModelInferResponse

from crestline.transport.tfserving_pb import PredictRequest, PredictResponse  # noqa: E402

COUNT = itertools.count(1)
LOCK = threading.Lock()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--model", default="ranker")
    p.add_argument("--reply-bytes", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--fail-code", type=int, default=14)
    p.add_argument("--max-age-ms", type=int, default=0,
                   help="grpc.max_connection_age_ms: GOAWAY on every connection this old")
    p.add_argument("--log", default=None)
    p.add_argument("--schema", default=None, metavar="FDS")
    p.add_argument("--expect", default=None, metavar="FILE.json")
    a = p.parse_args()
    log = open(a.log, "a") if a.log else None
    reply = b"r" * a.reply_bytes

    def note(line: str) -> None:
        if log is not None:
            with LOCK:
                log.write(line + "\n")
                log.flush()

    def maybe_fail(context) -> None:
        if a.delay_ms:
            time.sleep(a.delay_ms / 1000)
        if a.fail_every and next(COUNT) % a.fail_every == 0:
            context.abort(_code(a.fail_code), "injected failure")

    def model_infer(req, context):
        maybe_fail(context)
        if req.model_name != a.model:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {req.model_name!r} not found")
        raws = list(req.raw_input_contents) + [b""] * len(req.inputs)
        ins = ",".join(f"{t.name}/{t.datatype}/{'x'.join(map(str, t.shape))}/{len(raw)}"
                       for t, raw in zip(req.inputs, raws[:len(req.inputs)], strict=True))
        note(f"method=ModelInfer model={req.model_name} inputs={ins} "
             f"size={req.ByteSize()}")
        resp = ModelInferResponse(model_name=req.model_name, id=req.id)
        resp.outputs.add(name="scores", datatype="BYTES", shape=[1])
        resp.raw_output_contents.append(reply)
        return resp

    def predict(req, context):
        maybe_fail(context)
        if req.model_spec.name != a.model:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {req.model_spec.name!r} not found")
        ins = ",".join(f"{name}/{t.dtype}/{'x'.join(str(d.size) for d in t.tensor_shape.dim)}/"
                       f"{len(t.tensor_content) or len(t.string_val)}"
                       for name, t in sorted(req.inputs.items()))
        note(f"method=Predict model={req.model_spec.name} "
             f"signature={req.model_spec.signature_name} inputs={ins}")
        resp = PredictResponse()
        resp.outputs["scores"].tensor_content = reply
        return resp

    def echo(data: bytes, context):
        maybe_fail(context)
        note(f"method=Call size={len(data)}")
        return reply

    handlers = [
        grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                model_infer, request_deserializer=ModelInferRequest.FromString,
                response_serializer=ModelInferResponse.SerializeToString)}),
        grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, request_deserializer=PredictRequest.FromString,
                response_serializer=PredictResponse.SerializeToString)}),
        grpc.method_handlers_generic_handler("test.Echo", {
            "Call": grpc.unary_unary_rpc_method_handler(echo)}),
    ]
    if a.schema:
        handlers += _schema_handlers(a.schema, a.expect, note)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=handlers,
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)] + (
                             [("grpc.max_connection_age_ms", a.max_age_ms),
                              ("grpc.max_connection_age_grace_ms", 2000)]
                             if a.max_age_ms else []))
    if a.tls:
        cert, key = (open(f, "rb").read() for f in a.tls)
        port = server.add_secure_port(f"127.0.0.1:{a.port}",
                                      grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(f"127.0.0.1:{a.port}")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination(a.max_seconds)
    server.stop(0)
    return 0


def _schema_handlers(schema: str, expect: str | None, note) -> list:
    """A handler per method of the set's services, its classes built from the set alone."""
    import json

    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

    pool = descriptor_pool.DescriptorPool()
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(schema, "rb").read())
    for f in fds.file:  # protoc --include_imports writes imports first
        pool.Add(f)
    expected_json = open(expect).read() if expect else None
    handlers = []
    for f in fds.file:
        for s in f.service:
            service = pool.FindServiceByName(f"{f.package}.{s.name}" if f.package else s.name)
            methods = {}
            for m in service.methods:
                request_cls = message_factory.GetMessageClass(m.input_type)
                reply_cls = message_factory.GetMessageClass(m.output_type)
                try:  # the methods whose input the JSON is
                    expected = (json_format.Parse(expected_json, request_cls())
                                if expected_json else None)
                except json_format.ParseError:
                    expected = None

                def call(req, context, name=m.name, expected=expected, reply_cls=reply_cls):
                    got = json.dumps(json_format.MessageToDict(req), separators=(",", ":"),
                                     sort_keys=True)
                    match = expected is None or req == expected
                    note(f"method={name} match={int(match)} size={req.ByteSize()} json={got}")
                    if not match:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "message differs")
                    return reply_cls()

                methods[m.name] = grpc.unary_unary_rpc_method_handler(
                    call, request_deserializer=request_cls.FromString,
                    response_serializer=reply_cls.SerializeToString)
            handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return handlers


def _code(value: int):
    return next(c for c in grpc.StatusCode if c.value[0] == value)


if __name__ == "__main__":
    sys.exit(main())
