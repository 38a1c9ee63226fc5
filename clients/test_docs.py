"""The snippets of docs/protocol.md, run as they are written there (the URL pointed at the test
server), each output compared with the ```text block that follows it in the document."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
DOC_URL = "ws://127.0.0.1:9080/pubsub"
SNIPPET = re.compile(r"```(python|javascript)\n(.*?)```\s*```text\n(.*?)```", re.DOTALL)


def snippets(language: str) -> list[tuple[str, str]]:
    found = [
        (code, out) for lang, code, out in SNIPPET.findall(PROTOCOL.read_text()) if lang == language
    ]
    assert found, f"no {language} snippet with its output in {PROTOCOL}"
    return found


@pytest.mark.parametrize("index", range(len(snippets("python"))))
def test_python_snippet(server, index):
    code, expected = snippets("python")[index]
    assert DOC_URL in code
    done = subprocess.run(
        [sys.executable, "-c", code.replace(DOC_URL, server.ws())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected


@pytest.mark.parametrize("index", range(len(snippets("javascript"))))
def test_javascript_snippet_in_the_browser(server, browser, index):
    code, expected = snippets("javascript")[index]
    assert DOC_URL in code
    lines = expected.splitlines()
    browser.get(server.http("/"))  # the page loads long and protobufjs
    browser.set_script_timeout(15)
    got = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const lines = [];
        const console = { log: (...parts) => {
            lines.push(parts.join(" "));
            if (lines.length === arguments[0]) done(lines);
        } };
        (async () => { %s })().catch((e) => done(["error: " + e]));
        """
        % code.replace(DOC_URL, server.ws()),
        len(lines),
    )
    assert got == lines
