"""The SSE token scanner (crestline._sse) on hand-written streams: every split of the bytes
gives the same events, keys count only as keys, usage and [DONE] are found."""

from __future__ import annotations

import json

import pytest
from crestline._sse import SseScanner
from hypothesis import given, settings
from hypothesis import strategies as st


def chat_chunk(delta: dict, usage=None, finish=None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = (
    b": ping\r\n\r\n"  # keep-alive comment
    + chat_chunk({"role": "assistant", "content": ""})  # role-only prelude
    + chat_chunk({"reasoning_content": "think"})
    + chat_chunk({"content": "Hello"})
    + chat_chunk({"content": " \"content\": \"x\""})  # a key inside a token is no key
    + b"event: message\nid: 7\nretry: 100\n"  # other fields are ignored
    + chat_chunk({"content": ", world"})
    + chat_chunk({}, finish="stop")
    + chat_chunk(None, usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    + b"data: [DONE]\n\n"
)
KINDS = ["other", "reasoning", "content", "content", "content", "other", "other", "done"]


def scan_in_pieces(data: bytes, cuts: list[int]) -> SseScanner:
    s = SseScanner(keep_kinds=True)
    s.begin()
    edges = [0, *sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]
    for k, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        s.scan(data[a:b], 1_000 * (k + 1))
    s.end(10**9)
    return s


def test_a_whole_stream_in_one_read():
    s = scan_in_pieces(STREAM, [])
    assert s.event_kinds == KINDS
    assert (s.content_events, s.reasoning_events) == (3, 1)
    assert (s.usage_completion_tokens, s.usage_prompt_tokens) == (5, 11)
    assert s.done and not s.error and s.output_tokens == 5
    # one read: every token shares its time, so the gaps are 0
    assert s.first_token_ns == 1_000 and s.gaps_ns == [0, 0, 0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split_gives_the_same_events(cuts):
    s = scan_in_pieces(STREAM, cuts)
    assert s.event_kinds == KINDS
    assert (s.usage_completion_tokens, s.usage_prompt_tokens) == (5, 11)
    assert s.done


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_byte_by_byte(eol):
    data = STREAM.replace(b"\r\n", b"\n").replace(b"\n", eol)
    s = scan_in_pieces(data, list(range(len(data))))
    assert s.event_kinds == KINDS
    # one byte per read, reads 1 µs apart: gaps are the byte distance between token events
    gaps = s.gaps_ns
    assert len(gaps) == 3 and all(g > 0 for g in gaps)
    assert s.last_token_ns - s.first_token_ns == sum(gaps)


def test_completions_text_and_multiline_data():
    data = (b'data: {"object":"text_completion","choices":[{"text":"a","index":0}]}\n\n'
            b'data: {"object":"text_completion",\ndata: "choices":[{"text":"b"}]}\n\n'
            b'data: {"object":"text_completion","choices":[{"text":"","finish_reason":"length"}]}'
            b'\n\ndata: [DONE]\n\n')
    s = scan_in_pieces(data, [])
    assert s.event_kinds == ["content", "content", "other", "done"]
    assert s.usage_completion_tokens == -1 and s.output_tokens == 2


def test_reasoning_field_and_null_content():
    data = (b'data: {"choices":[{"delta":{"content":null,"reasoning":"r1"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":null}}]}\n\n'
            b'data: {"choices":[{"delta":{"content" : "x"}}],"usage":null}\n\n')
    s = scan_in_pieces(data, [])
    assert s.event_kinds == ["reasoning", "other", "content"]
    assert s.usage_completion_tokens == -1


def test_usage_on_every_chunk_keeps_the_last():
    data = b"".join(
        b'data: {"choices":[{"delta":{"content":"t"}}],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":%d}}\n\n' % k for k in range(1, 5))
    s = scan_in_pieces(data, [7, 50, 51, 120])
    assert s.content_events == 4 and s.usage_completion_tokens == 4


def test_error_event_and_cut_stream():
    s = scan_in_pieces(chat_chunk({"content": "a"})
                       + b'data: {"error":{"message":"overloaded","code":503}}\n\n', [])
    assert s.error and s.event_kinds == ["content", "error"]
    # a stream cut in the middle of an event: the half event is not a token, no [DONE]
    s = SseScanner(keep_kinds=True)
    s.begin()
    s.scan(chat_chunk({"content": "a"}) + b'data: {"choices":[{"delta":{"cont', 5)
    assert s.event_kinds == ["content"] and not s.done


def test_an_unterminated_last_event_counts_when_the_body_ends():
    s = scan_in_pieces(chat_chunk({"content": "a"}) + b"data: [DONE]", [])
    assert s.event_kinds == ["content", "done"]


def test_begin_forgets_the_previous_response():
    s = scan_in_pieces(STREAM, [])
    s.begin()
    s.scan(b'data: {"choices":[{"delta":{"cont', 1)
    s.begin()  # a new response: the half event above is gone
    s.scan(b'ent":"zz"}}]}\n\n', 2)  # a line of no known field, then a blank line
    assert s.event_kinds == [] and s.content_events == 0 and not s.done


def test_one_huge_event_is_capped_not_grown_without_bound():
    big = b'data: {"choices":[{"delta":{"content":"' + b"x" * (3 << 20) + b'"}}]}\n\n'
    s = scan_in_pieces(big, [4096 * k for k in range(1, 800)])
    assert s.content_events == 1 and s.bytes_dropped == len(big) - 8 - (1 << 20)
