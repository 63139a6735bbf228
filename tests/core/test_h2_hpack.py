"""The compiled HPACK decoder (crestline._hpack) against the `hpack` project's own encoder and
decoder: random header lists, Huffman or not, with dynamic-table inserts, evictions, never-
indexed fields and table size changes decode to the same fields; broken blocks are refused."""

from __future__ import annotations

import random

import pytest

hpack = pytest.importorskip("hpack")
from crestline._hpack import HpackDecoder, HpackError  # noqa: E402

NAMES = [":status", "content-type", "date", "server", "grpc-status", "grpc-message",
         "set-cookie", "x-custom-"]
CHARS = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 /:;=%-~_.,\"'"


def _headers(rng):
    out = []
    for _ in range(rng.randint(1, 10)):
        name = rng.choice(NAMES)
        if name.endswith("-"):
            name += str(rng.randint(0, 80))  # many distinct names: inserts and evictions
        value = "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 60)))
        if name == ":status":
            value = str(rng.choice([200, 204, 404, 503]))
        elif name == "grpc-status":
            value = str(rng.randint(0, 16))
        out.append((name, value, True) if rng.random() < 0.1 else (name, value))
    return out


def test_random_blocks_decode_as_the_reference_decoder_does():
    rng = random.Random(7)
    enc, ref, mine = hpack.Encoder(), hpack.Decoder(), HpackDecoder()
    for i in range(2000):
        if i % 400 == 0:
            enc.header_table_size = rng.choice([0, 256, 4096])  # a size update goes out
        block = enc.encode(_headers(rng), huffman=rng.random() < 0.7)
        want = [(k.encode(), v.encode()) for k, v in ref.decode(block)]
        assert mine.decode_all(block) == want, i


def test_status_and_grpc_fields_are_picked_out():
    enc, dec = hpack.Encoder(), HpackDecoder()
    dec.decode_all(enc.encode([(":status", "200"), ("content-type", "application/grpc")]))
    assert (dec.status, dec.grpc_status, dec.grpc_message) == (200, -1, None)
    dec.decode_all(enc.encode([("grpc-status", "14"), ("grpc-message", "down%20now")]))
    assert (dec.status, dec.grpc_status, dec.grpc_message) == (0, 14, b"down%20now")


@pytest.mark.parametrize("block, says", [
    (b"\x80", "index 0"),
    (b"\xbe", "past the dynamic table"),            # index 62 with an empty table
    (b"\x40\x85\xff\xff\xff\xff\xff\x01a", "Huffman"),  # EOS inside a string
    (b"\x40\x05ab", "past the block's end"),
    (b"\x3f\xe2\x1f", "SETTINGS_HEADER_TABLE_SIZE"),  # a size update to 4097
])
def test_broken_blocks_refused(block, says):
    with pytest.raises(HpackError, match=says):
        HpackDecoder().decode_all(block)


def test_a_status_that_is_not_a_number_is_refused():
    block = hpack.Encoder().encode([(":status", "2x0")])
    with pytest.raises(HpackError, match="bad status value"):
        HpackDecoder().decode_all(block)
