"""`python -m apisix_pubsub ping|request|listen ...`: the client from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import client as pubsub
from . import pubsub_pb2
from .notation import NotationError, parse_params, to_json, to_text

PROG = "python -m apisix_pubsub"

EXIT_OK = 0
EXIT_ERROR_REPLY = 1  # the server answered error_resp
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)
EXIT_CONNECTION = 3  # could not connect, or the connection ended before the reply / not cleanly
EXIT_TIMEOUT = 4  # no reply within --timeout
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    success (listen: --count or --duration reached, or the server closed cleanly)
  {EXIT_ERROR_REPLY}    the server answered error_resp (its message is printed on stderr)
  {EXIT_USAGE}    bad arguments
  {EXIT_CONNECTION}    cannot connect, handshake declined, or the connection ended otherwise
  {EXIT_TIMEOUT}    no reply within --timeout
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

VALUES = """values (key=value):
  integers   decimal (-1, 9223372036854775807), 0x hex or #digits; 64-bit values are exact
  bytes      text as typed (UTF-8), hex:0aff, base64:Cv8=, @file (its contents), text:... (literal)
  string     as typed
Replies print bytes in the same notation, so a printed value can be typed back."""


def _commands_help() -> str:
    lines = []
    for name in pubsub.COMMANDS:
        message = getattr(pubsub_pb2.PubSubReq(), name).DESCRIPTOR
        fields = " ".join(f"{f.name}=<{_type_name(f)}>" for f in message.fields)
        lines.append(f"  {name} {fields}".rstrip())
    return "commands of the proto:\n" + "\n".join(lines)


def _type_name(field: Any) -> str:
    names = {v: k[5:].lower() for k, v in vars(type(field)).items() if k.startswith("TYPE_")}
    return ("repeated " if field.is_repeated else "") + str(names.get(field.type, "?"))


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the subcommands the defaults are SUPPRESS, so an option given before the subcommand is
    # not overwritten by the subcommand's default.
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print each reply or push as one JSON object per line",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(10.0),
        help="limit for connecting and for each reply (default 10)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        default=default([]),
        help="an HTTP header for the handshake (repeatable)",
    )


def _parser(
    name: str, usage: str, description: str, command_help: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser: URL, then (with `command_help`) a COMMAND and its key=value fields."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} {name}",
        usage=usage,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=False)
    parser.add_argument("url", help="the WebSocket URL, e.g. ws://127.0.0.1:9080/pubsub")
    if command_help:
        parser.add_argument("command", help=command_help, nargs="?" if name == "listen" else None)
        parser.add_argument("params", nargs="*", metavar="key=value", help="the command's fields")
    return parser


def _ping_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "ping",
        f"{PROG} ping URL [STATE] [options]",
        "Send cmd_ping with STATE (bytes, default empty) and print the pong_resp.",
    )
    parser.add_argument("state", nargs="?", default="", help="the ping's state (bytes notation)")
    return parser


def _request_parser() -> argparse.ArgumentParser:
    return _parser(
        "request",
        f"{PROG} request URL COMMAND [key=value ...] [options]",
        "Send one command of the proto and print its reply.\n\n"
        f"{_commands_help()}\n\n{VALUES}\n\nexample:\n"
        f"  {PROG} request ws://127.0.0.1:9080/pubsub cmd_kafka_list_offset"
        " topic=t partition=0 timestamp=-1 --json",
        "a command (the cmd_ prefix may be left out)",
    )


def _listen_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "listen",
        f"{PROG} listen URL [COMMAND [key=value ...]] [options]",
        "Print the messages the server pushes, as they arrive, until the connection ends.\n"
        "With COMMAND, send it first and print its reply (e.g. a subscription).\n\n"
        f"{VALUES}",
        "a command to send first",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N pushes")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    return parser


SUBCOMMANDS = {"ping": _ping_parser, "request": _request_parser, "listen": _listen_parser}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A client for pubsub WebSocket endpoints"
        " (apisix-pubsub-rs, APISIX core.pubsub).",
        epilog="subcommands:\n"
        "  ping URL [STATE]                   send cmd_ping, print the pong\n"
        "  request URL COMMAND [key=value..]  send any command of the proto, print the reply\n"
        "  listen URL [COMMAND [key=value..]] print pushed messages as they arrive\n\n"
        f"`{PROG} SUBCOMMAND --help` tells more. Options go before or after the arguments.\n\n"
        f"example:\n  {PROG} ping ws://127.0.0.1:9080/pubsub hello\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=True)
    parser.add_argument(
        "subcommand",
        choices=sorted(SUBCOMMANDS),
        metavar="SUBCOMMAND",
        help="ping, request or listen",
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The top-level options, then the subcommand's (either may hold --json and the rest)."""
    if not argv:
        _top_parser().print_help(sys.stderr)
        raise SystemExit(EXIT_USAGE)
    top = _top_parser().parse_args(argv)
    sub = SUBCOMMANDS[top.subcommand]().parse_intermixed_args(top.args)
    merged = vars(top) | vars(sub)
    if "header" in vars(sub):
        merged["header"] = top.header + sub.header
    return argparse.Namespace(**merged)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(message: str, code: int) -> int:
    print(f"apisix_pubsub: {message}", file=sys.stderr)
    return code


def _headers(lines: list[str]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise NotationError(f"header {line!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _command_name(name: str) -> str:
    if name in pubsub.COMMANDS:
        return name
    if "cmd_" + name in pubsub.COMMANDS:
        return "cmd_" + name
    raise NotationError(f"unknown command {name!r}; commands: {', '.join(pubsub.COMMANDS)}")


def _params_of(command: str, assignments: list[str]) -> dict[str, Any]:
    message = getattr(pubsub_pb2.PubSubReq(), command).DESCRIPTOR
    return parse_params(message, assignments)


def _show(reply: pubsub.Reply, as_json: bool, note: str) -> None:
    if as_json:
        print(json.dumps({"sequence": reply.sequence, str(reply.kind): to_json(reply.to_dict())}))
    else:
        fields = to_text(reply.to_dict())
        print(" ".join(part for part in (str(reply.kind), fields, f"({note})") if part))
    sys.stdout.flush()


async def _run(args: argparse.Namespace) -> int:
    try:
        headers = _headers(args.header)
        command = _command_name(args.command) if getattr(args, "command", None) else None
        if args.subcommand == "ping":
            command, params = "cmd_ping", _params_of("cmd_ping", [f"state={args.state}"])
        else:
            params = _params_of(command, args.params) if command else {}
            if args.params and not command:
                raise NotationError("key=value arguments need a COMMAND")
    except NotationError as e:
        return _fail(str(e), EXIT_USAGE)
    try:
        async with pubsub.connect(
            args.url, headers=headers, open_timeout=args.timeout, request_timeout=args.timeout
        ) as client:
            if command:
                sent = time.monotonic()
                reply = await client.request(command, **params)
                rtt = (reply.received_at - sent) * 1000
                _show(reply, args.json, f"sequence {reply.sequence}, {rtt:.2f} ms")
            if args.subcommand == "listen":
                return await _listen(client, args)
            return EXIT_OK
    except pubsub.ErrorReply as e:
        if args.json:
            print(
                json.dumps(
                    {"sequence": e.sequence, "error_resp": {"code": e.code, "message": e.message}}
                )
            )
        return _fail(
            f"error_resp: {e.message} (code {e.code}, sequence {e.sequence})", EXIT_ERROR_REPLY
        )
    except (ValueError, TypeError) as e:
        return _fail(str(e), EXIT_USAGE)
    except TimeoutError:
        return _fail(f"no answer within {args.timeout:g} s", EXIT_TIMEOUT)
    except pubsub.PubSubError as e:
        return _fail(str(e), EXIT_CONNECTION)


async def _listen(client: pubsub.Client, args: argparse.Namespace) -> int:
    async def show_pushes() -> None:
        seen = 0
        async for push in client.pushes():
            _show(push, args.json, f"push, sequence {push.sequence}")
            seen += 1
            if args.count is not None and seen >= args.count:
                return

    if args.count == 0:
        return EXIT_OK
    try:
        await asyncio.wait_for(show_pushes(), args.duration)
    except TimeoutError:
        pass  # --duration reached
    if client.close_code is not None:  # the server closed, cleanly (else pushes() raised)
        if args.count is not None:
            return _fail(
                f"closed by the server (code {client.close_code}) before {args.count} pushes",
                EXIT_CONNECTION,
            )
        print(f"apisix_pubsub: closed by the server (code {client.close_code})", file=sys.stderr)
    return EXIT_OK
