"""Just enough HTTP/1.1 framing for the bench's origin and load generator.

Both sides need one answer from a buffer of bytes: "where does this message end?". A
message is a head (start line and headers, ending in an empty line) and a body framed by
Content-Length or by chunked transfer coding (RFC 9112 section 6). A real server also
rejects obs-fold, conflicting Content-Lengths, oversized heads and smuggling attempts; the
bench talks only to its own processes on loopback, so it checks framing and little else.
"""

from __future__ import annotations

HEAD_END = b"\r\n\r\n"


class FramingError(ValueError):
    """The bytes are not a message this module can frame (the connection is unusable)."""


def header_value(head_lower: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in a lower-cased head, or None.

    A substring search on the lowered head is far cheaper than parsing every header into a
    dict, which matters when the load generator and the origin share one core.
    """
    start = head_lower.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head_lower.find(b"\r\n", start)
    return head_lower[start : end if end >= 0 else len(head_lower)].strip()


def message_end(buf: bytes, head_end: int, head_lower: bytes) -> int | None:
    """Index just past the message whose head ends at `head_end`; None if incomplete.

    `head_end` is where HEAD_END starts; `head_lower` is the head, lowered. A message with
    neither Content-Length nor chunked coding has no body (true of requests; the bench
    never asks for a response that is delimited by closing the connection).
    """
    body_start = head_end + len(HEAD_END)
    coding = header_value(head_lower, b"transfer-encoding")
    if coding is not None:
        if not coding.endswith(b"chunked"):
            raise FramingError(f"unsupported transfer coding {coding!r}")
        return chunked_end(buf, body_start)
    length = header_value(head_lower, b"content-length")
    if length is None:
        return body_start
    try:
        size = int(length)
    except ValueError:
        raise FramingError(f"bad Content-Length {length!r}") from None
    if size < 0:
        raise FramingError(f"bad Content-Length {length!r}")
    end = body_start + size
    return end if len(buf) >= end else None


def chunked_end(buf: bytes, pos: int) -> int | None:
    """Index just past a chunked body starting at `pos` (trailers included), or None."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_field = buf[pos:line_end].split(b";", 1)[0]  # chunk extensions are ignored
        try:
            size = int(size_field, 16)
        except ValueError:
            raise FramingError(f"bad chunk size {size_field!r}") from None
        if size < 0:
            raise FramingError(f"bad chunk size {size_field!r}")
        pos = line_end + 2
        if size == 0:
            # The trailer section: header lines up to an empty line.
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return pos + 2
                pos = line_end + 2
        pos += size + 2
        if len(buf) < pos:
            return None
        if buf[pos - 2 : pos] != b"\r\n":
            raise FramingError("chunk data not followed by CRLF")
