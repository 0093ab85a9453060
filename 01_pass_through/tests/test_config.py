"""gateway.toml errors name the file, the key and the reason; start-up stops with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gateway.config import ConfigError, load_config

from common.testing.processes import child_env

STAGE = Path(__file__).resolve().parents[1]
ROUTE = '[[routes]]\nprefix = "/users"\nupstream = "http://127.0.0.1:9001"\n'


def problems(tmp_path: Path, text: str) -> str:
    config = tmp_path / "gateway.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(config, shown="gateway.toml")
    return str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ROUTE + '[[routes]]\nprefix = "/orders"\nupstream = "localhost:9002"\n',
            "gateway.toml:6: routes[1].upstream: must be an http:// URL (got 'localhost:9002')",
        ),
        (
            '[[routes]]\nprefix = "users"\nupstream = "http://127.0.0.1:9001"\n',
            "gateway.toml:2: routes[0].prefix: must start with '/' (got 'users')",
        ),
        (
            '[[routes]]\nprefix = "/users/"\nupstream = "http://127.0.0.1:9001"\n',
            "gateway.toml:2: routes[0].prefix: must not end with '/'",
        ),
        (
            '[[routes]]\nprefix = "/users"\nupstream = "https://users.internal"\n',
            "gateway.toml:3: routes[0].upstream: must be an http:// URL",
        ),
        (
            '[[routes]]\nprefix = "/users"\nupstream = "http://127.0.0.1:99999"\n',
            "gateway.toml:3: routes[0].upstream: must be an http:// URL with a valid port",
        ),
        (
            ROUTE + ROUTE,
            "gateway.toml:5: routes[1].prefix: '/users' is already routed by routes[0]",
        ),
        ('[[routes]]\nprefix = "/users"\n', "gateway.toml: routes[0].upstream: required key"),
        (ROUTE + "strip_prefx = true\n", "gateway.toml:4: routes[0].strip_prefx: unknown key"),
        ('[server]\nport = "8080"\n' + ROUTE, "gateway.toml:2: server.port: Input should be"),
        ("[timeouts]\nread = 0\n" + ROUTE, "gateway.toml:2: timeouts.read: Input should be"),
        ("[server]\nhost = '127.0.0.1'\n", "gateway.toml: routes: required key is missing"),
        ("routes = []\n", "gateway.toml:1: routes: List should have at least 1 item"),
        ("[server\n", "gateway.toml: not valid TOML: "),
    ],
)
def test_a_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    assert message in problems(tmp_path, text)


def test_an_unknown_key_names_its_line_and_the_key_it_resembles(tmp_path: Path) -> None:
    text = ROUTE + "\n[server]\nport = 8080\nacess_log = false\n\n[timeouts]\nconect = 2.0\n"
    found = problems(tmp_path, text).splitlines()
    assert "gateway.toml:7: server.acess_log: unknown key (did you mean 'access_log'?)" in found
    assert "gateway.toml:10: timeouts.conect: unknown key (did you mean 'connect'?)" in found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "[timeouts]\nconnect = -1\n" + '[[routes]]\nprefix = "x"\nupstream = "ftp://h"\n'
    assert len(problems(tmp_path, text).splitlines()) == 3


def test_toml_syntax_errors_carry_line_and_column(tmp_path: Path) -> None:
    assert "(at line 4, column 8)" in problems(tmp_path, ROUTE + "port = \n")


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope.toml: cannot read: No such file"):
        load_config(tmp_path / "nope.toml", shown="nope.toml")


def test_the_stage_config_is_valid() -> None:
    config = load_config(STAGE / "gateway.toml")
    assert [r.prefix for r in config.routes] == ["/users", "/orders", "/products", "/debug"]
    assert config.timeouts.connect == 2.0 and config.server.shutdown_timeout == 10.0


def run_gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_bad_config_stops_start_up_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(ROUTE.replace("http://", "tcp://"), encoding="utf-8")
    result = run_gateway("--config", str(tmp_path / "bad.toml"), "--port", "0", cwd=STAGE)
    assert result.returncode == 2
    assert "bad.toml:3: routes[0].upstream: must be an http:// URL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_check_validates_without_starting() -> None:
    result = run_gateway("--config", "gateway.toml", "--check", cwd=STAGE)
    assert result.returncode == 0, result.stderr
    assert "gateway.toml: ok, 4 routes" in result.stderr


def test_help_names_this_stage() -> None:
    """The description comes from gateway/__init__.py, so a copied stage cannot go on
    calling itself by its predecessor's name."""
    done = run_gateway("--help", cwd=STAGE)
    assert done.returncode == 0
    assert f"Stage {STAGE.name[:2]} API gateway" in " ".join(done.stdout.split())


def test_config_errors_print_bracketed_values_as_written(tmp_path: Path) -> None:
    """Values are not rich markup: `[red]` vanished from messages, `[/]` crashed --check."""
    bad = '[[routes]]\nprefix = "/{name}"\nupstream = "{upstream}"\n'
    text = bad.format(name="a", upstream="[red]") + bad.format(name="b", upstream="[/]")
    (tmp_path / "bad.toml").write_text(text, encoding="utf-8")
    result = run_gateway("--config", str(tmp_path / "bad.toml"), "--check", cwd=STAGE)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "(got '[red]')" in result.stderr and "(got '[/]')" in result.stderr


def test_every_line_of_a_multi_problem_config_error_reads_as_an_error(tmp_path: Path) -> None:
    text = '[server]\nport = "8080"\nbogus = 1\n' + ROUTE
    (tmp_path / "bad.toml").write_text(text, encoding="utf-8")
    result = run_gateway("--config", str(tmp_path / "bad.toml"), "--check", cwd=STAGE)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("error: ") for line in lines), lines
