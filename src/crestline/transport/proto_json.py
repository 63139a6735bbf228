"""A JSON --body as any gRPC method's request message, from the method's schema: --proto
FILE.proto (compiled in-process by grpcio-tools' protoc) or --descriptor-set FILE (what
`protoc --descriptor_set_out=FILE --include_imports` writes). The schema is loaded once per
spec and each distinct body parsed (google.protobuf.json_format) and serialized once, before
load, never per request. Every refusal is a ConfigError naming the option, the value and the
fix."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass, field

from crestline.errors import ConfigError

_LOCATED = re.compile(r":\d+:\d+: ")       # file.proto:3:25: the message
_ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} ")  # abseil's log lines: W1201 18:00:00.123 ...
_SET_HOW = "protoc --descriptor_set_out=FILE --include_imports YOUR.proto"


@dataclass(eq=False)
class ProtoSchema:
    """The services and messages of a --proto / --descriptor-set, as a serialized
    FileDescriptorSet: plain bytes, so the schema travels with the spec to worker processes
    and Ray actors, which then need neither protoc nor the files."""

    fds: bytes
    option: str     # how the user named it, for messages: "--proto demo.proto"
    source: tuple   # what it was loaded from: the same options reuse it unloaded
    # (path, body) -> message bytes: a body is encoded once at spec time and the workers,
    # which receive this with the spec, find it here.
    encoded: dict = field(default_factory=dict, repr=False)

    def defines(self, path: str) -> bool:
        """Whether the schema has the method of /package.Service/Method."""
        return _method(self, path, strict=False) is not None

    def require(self, path: str, whose: str = "the URL's") -> None:
        """Raises the ConfigError naming what the schema has, for a method it lacks."""
        _method(self, path, strict=True, whose=whose)

    def message(self, path: str, body: bytes, model: str | None, what: str = "--body") -> bytes:
        """The request message of `path`'s method for `body` (`what` names it in messages:
        "--body", or a trace's record): a JSON object encoded through the method's input
        type, or protobuf bytes checked to decode as it. Raises ConfigError for a method the
        schema lacks, JSON that does not fit the type (the field named), bytes that do not
        decode, and --model (it names no field here)."""
        # the method first: for one the schema lacks, a --model message would mislead
        method = _method(self, path, strict=True)
        if model is not None:
            raise ConfigError(f"--model {model!r} does not apply to {path[1:]} from "
                              f"{self.option}: put the model's name in the JSON --body's field")
        key = (path, body)
        if key in self.encoded:
            return self.encoded[key]
        cls = _message_class(self.fds, method.input_type.full_name)
        input_type = f"{method.input_type.full_name} (the input of {path[1:]} in {self.option})"
        doc, json_error = _as_json(body, what)
        if doc is None:
            try:
                cls.FromString(body)
            except Exception as exc:  # DecodeError, whose class differs by implementation
                raise ConfigError(json_error or (
                    f"{what}: {len(body)} bytes that are neither a JSON object nor a "
                    f"serialized {input_type} ({exc}): give the message as JSON, or its protobuf "
                    "bytes with --body @req.pb")) from None
            self.encoded[key] = body
            return body
        from google.protobuf import json_format
        from google.protobuf.message import EncodeError

        try:
            message = json_format.ParseDict(doc, cls(), descriptor_pool=_pool(self.fds)
                                            ).SerializeToString()
        except (json_format.ParseError, EncodeError, ValueError, TypeError) as exc:
            why = _one_line(exc).rstrip(".")
            raise ConfigError(f"{what} JSON does not match {input_type}: {why}: fix the "
                              "field's name or value (JSON names are the proto's field names "
                              "or their lowerCamelCase)") from None
        self.encoded[key] = message
        return message


def load_schema(proto, proto_path, descriptor_set: str | None,
                reuse: ProtoSchema | None = None) -> ProtoSchema | None:
    """The schema --proto FILE... (with --proto-path DIR... as protoc's include directories)
    or --descriptor-set FILE name; None when neither is given. `reuse`, loaded from the same
    options, is returned as it is (a spec is validated more than once). Raises ConfigError:
    a missing file, both options at once, no grpcio-tools for --proto, a .proto that does not
    compile (protoc's first error line), a file that is not a FileDescriptorSet."""
    protos = [proto] if isinstance(proto, str) else list(proto or [])
    dirs = [proto_path] if isinstance(proto_path, str) else list(proto_path or [])
    source = (tuple(protos), tuple(dirs), descriptor_set)
    if reuse is not None and reuse.source == source:
        return reuse
    if dirs and not protos:
        raise ConfigError(f"--proto-path {dirs[0]!r} applies with --proto FILE.proto: add the "
                          ".proto to compile, or drop it")
    if not protos and descriptor_set is None:
        return None
    if protos and descriptor_set is not None:
        raise ConfigError(f"--proto {protos[0]!r} and --descriptor-set {descriptor_set!r} both "
                          "give the schema: give one")
    if descriptor_set is not None:
        option = f"--descriptor-set {descriptor_set}"
        fds = _read_file("--descriptor-set", descriptor_set,
                         f"give the file that {_SET_HOW} writes")
    else:
        option = f"--proto {protos[0]}"
        fds = _compile(protos, dirs)
    _check_set(fds, option)
    return ProtoSchema(fds, option, source)


def check_schema_scheme(proto, proto_path, descriptor_set, url: str, is_grpc: bool) -> None:
    """The schema options mean something only for a gRPC method: refuse them elsewhere."""
    if is_grpc:
        return
    for option, value in (("--proto", proto), ("--proto-path", proto_path),
                          ("--descriptor-set", descriptor_set)):
        if value:
            shown = value if isinstance(value, str) else value[0]
            raise ConfigError(f"{option} {shown!r} applies to grpc:// and grpcs:// URLs (a JSON "
                              f"--body as the method's request message), not {url!r}: drop "
                              "it, or give grpc://HOST:PORT/package.Service/Method")


def _read_file(option: str, path: str, fix: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{option} file {path!r} not found: {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{option} file {path!r} cannot be read ({exc.strerror}): {fix}") \
            from None


def _compile(protos: list[str], dirs: list[str]) -> bytes:
    """protoc over the .proto files, in this process, into a FileDescriptorSet with every
    import included (the well-known types from grpcio-tools' own copies)."""
    for d in dirs:
        if not os.path.isdir(d):
            raise ConfigError(f"--proto-path {d!r} is not a directory: give the directory "
                              "your .proto files' imports are relative to")
    for p in protos:
        if not os.path.isfile(p):
            raise ConfigError(f"--proto file {p!r} not found: give the path of the service's "
                              ".proto file")
    try:
        from importlib import resources

        from grpc_tools import protoc
    except ImportError:
        raise ConfigError(f"--proto {protos[0]!r} needs protoc: pip install grpcio-tools, or "
                          f"compile it yourself ({_SET_HOW}) and give --descriptor-set FILE") \
            from None
    includes = [os.path.abspath(d) for d in dirs]
    args = []
    for p in protos:
        path = os.path.abspath(p)
        # protoc names each file by where it lies under an include directory; one outside
        # every --proto-path is compiled from its own directory.
        if not any(os.path.commonpath([path, d]) == d for d in includes):
            includes.append(os.path.dirname(path))
        args.append(path)
    includes.append(str(resources.files("grpc_tools") / "_proto"))
    with tempfile.TemporaryDirectory(prefix="crestline-proto-") as tmp:
        out = os.path.join(tmp, "schema.pb")
        rc, errors = _stderr_of(protoc.main, ["protoc", *(f"-I{d}" for d in includes),
                                              "--include_imports", f"--descriptor_set_out={out}",
                                              *args], os.path.join(tmp, "stderr"))
        if rc != 0:
            first = _first_error(errors) or f"protoc exited with {rc}"
            raise ConfigError(f"--proto {protos[0]!r} does not compile: {first.strip()}: fix "
                              "the file (or its imports' --proto-path)")
        with open(out, "rb") as f:
            return f.read()


def _first_error(errors: str) -> str | None:
    """protoc's first error line: one naming file:line:col, else the first that is not
    abseil's logging (grpcio-tools 1.81's protoc can open with its "WARNING: All log messages
    before absl::InitializeLog()" banner, or a "W0101 12:00:00..." line, before the error)."""
    lines = [line.strip() for line in errors.splitlines() if line.strip()]
    located = next((line for line in lines if _LOCATED.search(line)), None)
    return located or next((line for line in lines if not line.startswith("WARNING:")
                            and not _ABSL_PREFIX.match(line)), None)


def _stderr_of(fn, args, path: str) -> tuple[int, str]:
    """fn(args) with file descriptor 2 sent to `path`: protoc writes its errors there from C++,
    past sys.stderr."""
    saved = os.dup(2)
    try:
        with open(path, "w+b") as f:
            os.dup2(f.fileno(), 2)
            try:
                rc = fn(args)
            finally:
                os.dup2(saved, 2)
            f.seek(0)
            return rc, f.read().decode(errors="replace")
    finally:
        os.close(saved)


def _check_set(fds: bytes, option: str) -> None:
    """The bytes decode as a FileDescriptorSet whose files (and imports) build a pool."""
    from google.protobuf import descriptor_pb2

    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(fds).file
    except Exception:  # DecodeError, whose class differs by implementation: not protobuf
        files = None
    if not files or not all(f.name for f in files):
        raise ConfigError(f"{option}: not a FileDescriptorSet with any file in it: give the "
                          f"file that {_SET_HOW} writes")
    try:
        _pool(fds)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


@functools.lru_cache(maxsize=8)
def _pool(fds: bytes):
    """A descriptor pool of its own for the set (never the default pool: a user's copy of
    a protocol must not clash with crestline's or another library's classes). Raises
    ValueError saying which file does not load."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(fds).file}
    pool, added = descriptor_pool.DescriptorPool(), set()

    def add(name: str, importer: str) -> None:
        # imports first: a set need not list them in order
        if name in added:
            return
        if name not in files:
            raise ValueError(f"{importer} imports {name!r}, which the set does not hold: "
                             f"write it with --include_imports ({_SET_HOW})")
        added.add(name)
        for dep in files[name].dependency:
            add(dep, name)
        try:
            pool.Add(files[name])
        except Exception as exc:  # TypeError or a descriptor error, by implementation
            raise ValueError(f"{name!r} does not load ({_one_line(exc)}): rewrite the set "
                             f"with {_SET_HOW}") from None

    for name in files:
        add(name, name)
    return pool


def _method(schema: ProtoSchema, path: str, strict: bool, whose: str = "the URL's"):
    service_name, _, method_name = path[1:].partition("/")
    pool = _pool(schema.fds)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        if not strict:
            return None
        services = _services(schema.fds)
        raise ConfigError(f"{path[1:]}: {schema.option} has no service {service_name!r} "
                          f"(it has: {', '.join(services) or 'none'}): fix {whose} "
                          "package.Service, or give the .proto that defines it") from None
    method = service.methods_by_name.get(method_name)
    if method is None and strict:
        raise ConfigError(f"{path[1:]}: service {service_name} in {schema.option} has no "
                          f"method {method_name!r} (it has: "
                          f"{', '.join(service.methods_by_name) or 'none'}): fix {whose} "
                          "Method")
    return method


def _services(fds: bytes) -> list[str]:
    from google.protobuf import descriptor_pb2

    names = []
    for f in descriptor_pb2.FileDescriptorSet.FromString(fds).file:
        for s in f.service:
            names.append(f"{f.package}.{s.name}" if f.package else s.name)
    return names


@functools.lru_cache(maxsize=64)
def _message_class(fds: bytes, full_name: str):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(_pool(fds).FindMessageTypeByName(full_name))


def _as_json(body: bytes, what: str = "--body") -> tuple[dict | None, str | None]:
    """(the body's JSON object, None), or (None, why it is not one) when it starts like JSON
    but does not parse (protobuf bytes can: a length byte of 123 is "{"; the caller then
    tries them as the message), or (None, None) when it does not start like JSON."""
    if body.lstrip()[:1] != b"{":
        return None, None
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return None, (f"{what} is not JSON ({exc}): give the request message as a JSON "
                      "object, or its protobuf bytes with --body @req.pb")
    if not isinstance(doc, dict):
        return None, f"{what}: the request message's JSON is an object ({{...}})"
    return doc, None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
