"""Error messages that name the client's own limits, not the server's fault.

The core keeps the operating system's words ("[Errno 99] Cannot assign requested address");
a user reading "connect" errors blames the server. explain() prefixes the few errors that are
the client host running out of something with what ran out and the fix. Pure; applied to the
handful of messages kept per interval, never per request.
"""

from __future__ import annotations

# errno: (what ran out, the fix). Matched on "[Errno N]" in the message (the text after it is
# the C library's and may be localised).
_CLIENT_LIMITS = {
    99: ("out of local ports (EADDRNOTAVAIL): every ephemeral port to this target is in use or "
         "in TIME_WAIT", "fewer --connections, keep-alive responses, or a wider "
         "net.ipv4.ip_local_port_range"),
    24: ("out of file descriptors (EMFILE)", "raise ulimit -n, or lower --connections"),
    23: ("the host is out of file descriptors (ENFILE)", "raise fs.file-max, or lower "
         "--connections"),
    105: ("out of socket buffer memory (ENOBUFS)", "lower --connections or the rate"),
}


def explain(message: str) -> str:
    """message, prefixed with the client limit it shows, if it shows one."""
    for errno, (what, fix) in _CLIENT_LIMITS.items():
        if f"[Errno {errno}]" in message:
            return f"client {what} ({fix}): {message}"
    return message
