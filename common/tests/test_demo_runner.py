"""The demo.http runner: REST Client syntax in, exact bytes on the wire, honest verdicts.

The server here is a tiny http.server in a thread that echoes what it received, so the
tests see the request exactly as the runner sent it (no backend, no gateway involved).
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.demo import DemoError, DemoParseError, assert_demo, load_demo, parse_demo, run_demo
from common.demo.__main__ import main

RELEASE_SLOW = threading.Event()  # /slow answers only once the test lets it


class EchoHandler(BaseHTTPRequestHandler):
    """`/status/N` answers N; `/login` answers a token; `/slow` stalls; anything else
    echoes method, raw path, headers and body as JSON."""

    def handle_one_request(self) -> None:  # every method goes through here
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            return
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
            self.reply(status, {"status": status})
        elif self.path == "/login":
            token = {"token": "t-123", "user": {"id": 7, "roles": ["admin", "dev"]}}
            self.reply(200, token, (("X-Session", "s-9"),))
        elif self.path == "/slow":
            RELEASE_SLOW.wait(5)
            self.reply(200, {})
        else:
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": list(self.headers.items()),
                "body": body.decode(),
            }
            self.reply(200, echo)

    def reply(self, status: int, payload: object, extra: tuple[tuple[str, str], ...] = ()) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet tests
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    RELEASE_SLOW.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.http"
    path.write_text(text)
    return path


SAMPLE = """\
@host = http://127.0.0.1:9001
@api = {{host}}/api
@who = demo-user

# a comment block before the first request: no request here

### 1. a plain GET
# expect: 200
GET {{api}}/users HTTP/1.1

### 2. no method means GET; the URL goes on over two lines
// expect: 404
{{api}}/search
    ?q=ada
    &limit=2
Accept: application/json
# a comment between headers is not a header
X-Who: {{who}}

### 3. a named POST with a body
# @name create
# expect: 201
POST {{api}}/users
Content-Type: application/json

{
  "name": "Ada"
}


###
# expect: 204
DELETE {{api}}/users/{{create.response.body.$.id}}

### 5. only notes, no request
# nothing to send
"""


def test_parse_reads_every_feature(tmp_path: Path) -> None:
    demo = load_demo(write(tmp_path, SAMPLE))
    assert demo.variables == {
        "host": "http://127.0.0.1:9001",
        "api": "{{host}}/api",
        "who": "demo-user",
    }
    first, second, third, fourth = demo.requests  # block 5 and the top hold no request

    assert (first.number, first.title, first.method, first.url) == (
        1, "a plain GET", "GET", "{{api}}/users",
    )  # fmt: skip
    assert (first.expect, first.line, first.headers, first.body) == (200, 9, [], None)

    assert second.method == "GET" and second.expect == 404
    assert second.url == "{{api}}/search?q=ada&limit=2"
    assert second.headers == [("Accept", "application/json"), ("X-Who", "{{who}}")]

    assert (third.name, third.expect, third.method) == ("create", 201, "POST")
    assert third.headers == [("Content-Type", "application/json")]
    assert third.body == '{\n  "name": "Ada"\n}'  # trailing blank lines trimmed

    # An untitled separator: numbered by position, identified by its line.
    assert (fourth.number, fourth.title, fourth.line) == (4, "", 33)
    assert fourth.url == "{{api}}/users/{{create.response.body.$.id}}"
    assert parse_demo(tmp_path / "demo.http") == demo.requests


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("### 1. x\n# expect: 200\n# expect: 201\nGET /\n", ":3: a second `# expect:`"),
        ("### 1. x\n# expect: ok\nGET /\n", ":2: `# expect:` wants a status code"),
        ("### 1. x\n# expect: 200\nGET http://h/\nnot a header\n", ":4: expected a header"),
        ("### 1. x\n# expect: 200\n", ":1: this request has no request line"),
        ("@a = 1\n@a = 2\n", ":2: @a is already defined on line 1"),
        ("### 1. x\n# expect: 200\nget http://h/\n", ":3: write the method in capitals"),
    ],
)
def test_parse_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DemoParseError) as caught:
        parse_demo(write(tmp_path, text))
    assert message in str(caught.value)


def test_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DemoParseError, match="no such file"):
        parse_demo(tmp_path / "nope.http")


def test_run_substitutes_variables_and_sends_exact_bytes(tmp_path: Path, server: str) -> None:
    path = write(
        tmp_path,
        """\
@base = http://127.0.0.1:1
@api = {{base}}/v1
@name = Ada

### 1. file variables everywhere, the URL as written
# expect: 200
POST {{api}}/a/../b%2Fc?x={{name}}&y=%20
X-Name: {{name}}
Content-Type: application/json

{"name": "{{name}}", "id": "{{$guid}}", "n": {{$randomInt 5 6}}, "t": {{$timestamp}}}
""",
    )
    [result] = run_demo(path, {"base": server})
    assert result.ok, result.problem()
    echo = json.loads(result.body)
    assert echo["method"] == "POST"
    assert echo["path"] == "/v1/a/../b%2Fc?x=Ada&y=%20"  # not normalised, not re-encoded
    body = json.loads(echo["body"])
    assert body["name"] == "Ada" and body["n"] == 5
    assert uuid.UUID(body["id"]).version == 4
    assert isinstance(body["t"], int)
    # Only the headers the demo wrote, plus Host and Content-Length: no User-Agent,
    # no Accept-Encoding, nothing a gateway demo would have to explain away.
    sent = dict(echo["headers"])
    assert sent == {
        "Host": server.removeprefix("http://"),
        "X-Name": "Ada",
        "Content-Type": "application/json",
        "Content-Length": str(len(echo["body"].encode())),
    }


def test_request_variables_read_an_earlier_response(tmp_path: Path, server: str) -> None:
    path = write(
        tmp_path,
        """\
@base = http://127.0.0.1:1

### 1. log in
# @name login
# expect: 200
POST {{base}}/login

### 2. use what it answered
# expect: 200
GET {{base}}/me?user={{login.response.body.$.user.id}}&role={{login.response.body.$.user.roles[1]}}
Authorization: Bearer {{login.response.body.$.token}}
X-Session: {{login.response.headers.x-session}}
X-Sent: {{login.request.headers.Host}}
""",
    )
    login, me = run_demo(path, {"base": server})
    assert login.ok and me.ok, (login.problem(), me.problem())
    echo = json.loads(me.body)
    assert echo["path"] == "/me?user=7&role=dev"
    headers = dict(echo["headers"])
    assert headers["Authorization"] == "Bearer t-123"
    assert headers["X-Session"] == "s-9"
    assert headers["X-Sent"] == server.removeprefix("http://")


def test_a_wrong_expectation_is_reported_with_title_and_body(tmp_path: Path, server: str) -> None:
    path = write(
        tmp_path,
        """\
@base = http://127.0.0.1:1

### 1. this one is right
# expect: 404
GET {{base}}/status/404

### 2. this one is wrong
# expect: 201
GET {{base}}/status/200
""",
    )
    with pytest.raises(AssertionError) as caught:
        assert_demo(path, {"base": server})
    message = str(caught.value)
    assert "1 of 2 requests did not answer as expected" in message
    assert "2. this one is wrong (line 9): expected 201, got 200" in message
    assert '{"status": 200}' in message  # the start of the body
    assert "this one is right" not in message


def test_errors_become_results_and_the_demo_goes_on(tmp_path: Path, server: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        path = write(
            tmp_path,
            f"""\
@base = http://127.0.0.1:1

### 1. a typo in a variable
# expect: 200
GET {{{{bsae}}}}/x

### 2. a request variable of a request that never answered
# expect: 200
GET {{{{base}}}}/x?t={{{{gone.response.body.$.token}}}}

### 3. nobody listens
# @name gone
# expect: 200
GET {dead}/x

### 4. too slow
# expect: 200
GET {{{{base}}}}/slow

### 5. still runs
# expect: 200
GET {{{{base}}}}/fine
""",
        )
        results = run_demo(path, {"base": server}, timeout=0.5)
    typo, early, refused, slow, fine = results
    assert "unknown variable {{bsae}}" in (typo.error or "")
    assert "request 'gone' has no response yet" in (early.error or "")
    assert "connection refused" in (refused.error or "")
    assert "no complete response within 0.5 s" in (slow.error or "")
    assert fine.ok
    assert not any(r.ok for r in (typo, early, refused, slow))


def test_overriding_a_variable_that_does_not_exist_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "@users = http://127.0.0.1:1\n### 1. x\n# expect: 200\nGET {{users}}/\n")
    with pytest.raises(DemoError, match="cannot override usres: no such @variable"):
        run_demo(path, {"usres": "http://127.0.0.1:2"})


def test_command_line_prints_a_table_and_exits_1_on_mismatch(
    tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "@base = http://127.0.0.1:1\n\n### 1. teapot\n# expect: 418\nGET {{base}}/status/418\n",
    )
    assert main([str(path), "--var", f"base={server}"]) == 0
    assert "teapot" in capsys.readouterr().out
    path.write_text(path.read_text().replace("# expect: 418", "# expect: 200"))
    assert main([str(path), "--var", f"base={server}"]) == 1
    out = capsys.readouterr().out
    assert "expected 200, got 418" in out and "0 of 1 requests answered as expected" in out
