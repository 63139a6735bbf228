"""call://NAME targets: the user's `async def call(payload: bytes) -> int | None` driven by the
open-loop engine in place of a socket (crestline._callable).

    from crestline.transport.callable import register
    url = register(my_call)                  # "call://my_call"
    crestline.run(url, rate_rps=500, duration_s=10, body=b'{"x": 1}')

Each request's payload is its body: the run's `body`, or each trace record's. A call's
status: None or below 400 is ok, 4xx and 5xx count as http_4xx and http_5xx, an exception as
`read` with its text. `connections` bounds the calls outstanding at once. The slower path: a
task and a coroutine per request (bench/callable_bench.py measures its ceiling). Calls run in
this process, on the engine's event loop: no `workers`, no `cluster`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from crestline.errors import ConfigError

CallFn = Callable[[bytes], Awaitable[int | None]]
_CALLS: dict[str, CallFn] = {}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def register(call: CallFn, name: str | None = None) -> str:
    """Make `call` a target; returns its URL, call://NAME (NAME defaults to the function's
    name, lowercased, '_' as '-'). Re-registering a name replaces its function. Raises
    ConfigError for a name that cannot be a URL host."""
    if not callable(call):
        raise ConfigError(f"register() needs an async function, not {call!r}")
    name = name or getattr(call, "__name__", "call").lower().replace("_", "-")
    if not _NAME_RE.match(name):
        raise ConfigError(f"call target name {name!r}: use lowercase letters, digits and '-'")
    _CALLS[name] = call
    return f"call://{name}"


def unregister(name: str) -> None:
    _CALLS.pop(name, None)


def lookup(name: str) -> CallFn:
    """The function behind call://name. Raises ConfigError if none is registered."""
    call = _CALLS.get(name)
    if call is None:
        raise ConfigError(f"call://{name} is not a registered call target: register it first "
                          "(crestline.transport.callable.register(fn))")
    return call


def check_call_spec(workers: int, cluster: str | None) -> None:
    """A call target runs in this process only. Raises ConfigError otherwise."""
    if workers > 1 or cluster:
        raise ConfigError("a call:// target runs in this process only: drop --workers and "
                          "--cluster (raise --connections for more concurrent calls)")


def body_of(request: bytes) -> bytes:
    """A rendered HTTP/1.1 request's body: what a call receives as its payload."""
    return request.partition(b"\r\n\r\n")[2]


def factory(name: str):
    """The Connector factory for call://name (the core's transport argument)."""
    import functools

    from crestline._callable import CallableConnector

    return functools.partial(CallableConnector, call=lookup(name))
