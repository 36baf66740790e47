"""Stand-ins for the commands the azd hooks call (az, azd, curl, sleep), written into a test's tmp_path
and put first on PATH, so that the hooks' own shell runs for real. Each stand-in logs its arguments and
answers by rules: the rule added last whose command is the one called and whose words are all among
its arguments answers, with its answers in turn (the last one repeats); without a rule, success and no
output.
curl writes the answer's body where -o says and logs the headers it was given with -H @file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "infra" / "hooks"

_STUB = """#!{python}
import json, sys
from pathlib import Path

here = Path(__file__).resolve().parent
name, args = Path(sys.argv[0]).name, sys.argv[1:]
record = {{"cmd": name, "args": args}}
if name == "curl":
    record["headers"] = [
        Path(a[1:]).read_text() for a in args if a.startswith("@")
    ]
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps(record) + "\\n")
rules = json.loads((here / "rules.json").read_text())
state_file = here / "state.json"
state = json.loads(state_file.read_text()) if state_file.exists() else {{}}
answer = {{}}
for index, rule in reversed(list(enumerate(rules))):
    if rule["cmd"] == name and all(word in args for word in rule["when"]):
        seen = state.get(str(index), 0)
        state[str(index)] = seen + 1
        state_file.write_text(json.dumps(state))
        answer = rule["answers"][min(seen, len(rule["answers"]) - 1)]
        break
if name == "curl" and "-o" in args:
    Path(args[args.index("-o") + 1]).write_text(answer.get("body", ""), encoding="utf-8")
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("rc", 0))
"""

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "99999999-8888-7777-6666-555555555555"

_RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-rebuilder-test"

# What azd gives the hooks: its own variables and the deployment's outputs.
AZD_ENVIRONMENT = {
    "AZURE_ENV_NAME": "rebuilder-test",
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "AZURE_LOCATION": "westeurope",
    "AZURE_RESOURCE_GROUP": "rg-rebuilder-test",
    "AZURE_FUNCTION_APP_NAME": "rebuilder-test-abc",
    "AZURE_FUNCTION_APP_ID": f"{_RG}/providers/Microsoft.Web/sites/rebuilder-test-abc",
    "AZURE_FUNCTION_APP_URL": "https://rebuilder-test-abc.example.test",
    "AUTH_CLIENT_ID": CLIENT_ID,
    "SYSTEM_TOPIC_NAME": "rebuilder-test-subscription-events",
    "SYSTEM_TOPIC_RESOURCE_GROUP": "rg-rebuilder-test",
    "NOTICES_TOPIC_NAME": "rebuilder-test-notices-abc",
    "DEAD_LETTER_ACCOUNT_ID": f"{_RG}/providers/Microsoft.Storage/storageAccounts/rebuihosttest",
    "DEAD_LETTER_CONTAINER": "eventgrid-deadletter",
}


@dataclass
class Call:
    cmd: str
    args: list[str]
    headers: list[str] = field(default_factory=list)

    def option(self, name: str) -> str:
        return self.args[self.args.index(name) + 1]

    def starts(self, *words: str) -> bool:
        return self.args[: len(words)] == list(words)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[Call]

    def of(self, cmd: str, *words: str) -> list[Call]:
        return [c for c in self.calls if c.cmd == cmd and c.starts(*words)]

    @property
    def sleeps(self) -> list[int]:
        return [int(c.args[0]) for c in self.of("sleep")]


class Stubs:
    """az, azd, curl and sleep in `bin`, answering by rules added with `when`."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.rules: list[dict[str, Any]] = []
        for name in ("az", "azd", "curl", "sleep"):
            stub = self.bin / name
            stub.write_text(_STUB.format(python=sys.executable))
            stub.chmod(0o755)

    def when(self, cmd: str, *words: str, answers: list[dict[str, Any]]) -> Stubs:
        self.rules.append({"cmd": cmd, "when": list(words), "answers": answers})
        return self

    def run(self, hook: str, **environment: str | None) -> Run:
        (self.bin / "rules.json").write_text(json.dumps(self.rules))
        env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(self.bin.parent)}
        env.update(AZD_ENVIRONMENT)
        for name, value in environment.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        done = subprocess.run(
            ["/bin/sh", str(HOOKS / hook)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        log = self.bin / "calls.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        calls = [Call(**json.loads(line)) for line in lines]
        log.unlink(missing_ok=True)
        (self.bin / "state.json").unlink(missing_ok=True)
        return Run(done.returncode, done.stdout, done.stderr, calls)


def ok(stdout: str = "") -> dict[str, Any]:
    return {"stdout": stdout, "rc": 0}


def error(stderr: str) -> dict[str, Any]:
    return {"stderr": stderr, "rc": 1}
