"""`python -m apisix_pubsub` as a user runs it, against the real nginx of the `server` fixture."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apisix_pubsub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ping_prints_the_pong_with_sequence_and_round_trip(server):
    done = cli("ping", server.ws(), "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('pong_resp state="hello" (sequence 1, ')
    assert done.stdout.rstrip().endswith(" ms)")


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_json_goes_before_or_after_the_arguments(server, where):
    args = ["ping", server.ws(), "hello"]
    args.insert({"first": 0, "middle": 2, "last": 3}[where], "--json")
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sequence": 1, "pong_resp": {"state": "hello"}}


def test_request_as_in_the_readme(server):
    done = cli(
        "request",
        server.ws(),
        "cmd_kafka_list_offset",
        "topic=t",
        "partition=0",
        "timestamp=-1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sequence": 1, "kafka_list_offset_resp": {"offset": 42}}
    short = cli("request", server.ws(), "kafka_list_offset", "topic=t")
    assert short.stdout.startswith("kafka_list_offset_resp offset=42 (sequence 1, ")


def test_error_resp_exits_1_with_the_message_on_stderr(server):
    done = cli("request", server.ws(), "cmd_kafka_list_offset", "partition=-1")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "apisix_pubsub: error_resp: bad partition (code 0, sequence 1)\n"
    unknown = cli("--json", "request", server.ws(), "cmd_kafka_fetch", "topic=t")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout) == {
        "sequence": 1,
        "error_resp": {"code": 0, "message": "unknown command: cmd_kafka_fetch"},
    }
    assert "unknown command: cmd_kafka_fetch" in unknown.stderr


@pytest.mark.parametrize(
    "typed, value",
    [
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
        ("#9007199254740993", 9007199254740993),
        ("0x7fffffffffffffff", 9223372036854775807),
        ("-1", -1),
    ],
)
def test_int64_as_typed_comes_back_exact_as_a_json_number(server, typed, value):
    done = cli(
        "request",
        server.ws("/test"),
        "cmd_kafka_list_offset",
        "topic=echo",
        f"timestamp={typed}",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert f'"offset": {value}' in done.stdout
    assert json.loads(done.stdout)["kafka_list_offset_resp"]["offset"] == value


@pytest.mark.parametrize(
    "typed, printed",
    [
        ("plain text", "plain text"),
        ("hex:00ff", "base64:AP8="),
        ("base64:AP8=", "base64:AP8="),
        ("hex:68690a", "hi\n"),
        ("text:hex:not hex", "text:hex:not hex"),
    ],
)
def test_bytes_as_typed_and_printed_in_the_same_notation(server, typed, printed):
    done = cli("ping", server.ws(), typed, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pong_resp"]["state"] == printed
    again = cli("ping", server.ws(), printed, "--json")  # what is printed types back
    assert json.loads(again.stdout)["pong_resp"]["state"] == printed


def test_bytes_from_a_file(server, tmp_path):
    path = tmp_path / "state.bin"
    path.write_bytes(bytes(range(256)))
    done = cli("ping", server.ws(), f"@{path}", "--json")
    import base64

    assert (
        json.loads(done.stdout)["pong_resp"]["state"]
        == "base64:" + base64.b64encode(bytes(range(256))).decode()
    )


def test_nested_and_binary_fields_print_readably(server):
    done = cli("request", server.ws("/test"), "cmd_kafka_fetch", "topic=k", "offset=7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        'kafka_fetch_resp messages=[{offset=7 timestamp=-1 key="k" value="base64:AP8K"}] (sequence 1, '
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["request", "{url}", "cmd_nope"], "unknown command 'cmd_nope'"),
        (["request", "{url}", "cmd_ping", "nope=1"], "CmdPing has no field 'nope' (fields: state)"),
        (["request", "{url}", "cmd_ping", "state"], "'state': expected key=value"),
        (
            ["request", "{url}", "cmd_kafka_list_offset", "partition=2147483648"],
            "partition: 2147483648 is out of range",
        ),
        (
            ["request", "{url}", "cmd_kafka_list_offset", "timestamp=1.5"],
            "timestamp: '1.5' is not an integer",
        ),
        (["ping", "{url}", "hex:0"], "'hex:0'"),
        (["ping", "{url}", "-H", "no colon"], "expected 'Name: value'"),
        (["listen", "{url}", "topic=t"], "unknown command 'topic=t'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(server, args, message):
    done = cli(*[a.replace("{url}", server.ws()) for a in args])
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_connection_problems_exit_3(server):
    refused = cli("ping", f"ws://127.0.0.1:{server.port}/nope")
    assert (refused.returncode, refused.stderr.strip()) == (
        3,
        f"apisix_pubsub: ws://127.0.0.1:{server.port}/nope: the server answered HTTP 404",
    )
    not_ws = cli("ping", "http://127.0.0.1/")
    assert not_ws.returncode == 3 and "not a WebSocket URL" in not_ws.stderr
    too_big = cli("ping", server.ws(), "x" * 70000)
    assert too_big.returncode == 3 and "code 1009" in too_big.stderr


def test_headers_go_with_the_handshake(server):
    assert cli("ping", server.ws("/auth")).returncode == 3
    done = cli("ping", server.ws("/auth"), "ok", "-H", "Authorization: Bearer test")
    assert done.returncode == 0, done.stderr


def test_no_reply_within_the_timeout_exits_4(server):
    done = cli(
        "request",
        server.ws("/test"),
        "cmd_kafka_list_offset",
        "topic=sleep",
        "timestamp=2000",
        "--timeout",
        "0.3",
    )
    assert (done.returncode, done.stderr) == (4, "apisix_pubsub: no answer within 0.3 s\n")


@pytest.mark.parametrize("sub", [[], ["ping"], ["request"], ["listen"]])
def test_help_for_each_subcommand(sub):
    done = cli(*sub, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m apisix_pubsub")
    assert "exit codes:" in done.stdout


def test_listen_prints_nothing_without_pushes_and_stops_after_its_duration(server):
    done = cli("listen", server.ws(), "--duration", "0.3")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_listen_sends_its_command_first(server):
    done = cli("listen", server.ws(), "cmd_ping", "state=subscribe", "--duration", "0.2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sequence": 1, "pong_resp": {"state": "subscribe"}}


def test_listen_prints_pushes_from_a_pushing_peer(server):
    done = cli("listen", server.ws("/raw-push"), "--count", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"sequence": 0, "pong_resp": {"state": "first"}},
        {"sequence": 7, "pong_resp": {"state": "second"}},
    ]
    readable = cli("listen", server.ws("/raw-push"), "cmd_ping", "state=sub", "--count", "3")
    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert lines[0].startswith('pong_resp state="sub" (sequence 1, ')  # the reply first
    assert lines[1:] == [
        'pong_resp state="first" (push, sequence 0)',
        'pong_resp state="second" (push, sequence 7)',
        'pong_resp state="between" (push, sequence 0)',
    ]


def test_listen_prints_pushes(server):
    if not server.has_push():
        pytest.skip("the server has no push yet: apisix_pubsub_rs instances lack send()")
    done = cli("listen", server.ws("/push"), "--count", "1", "--json", timeout=10)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sequence": 0, "pong_resp": {"state": "pushed"}}
