"""Hostile YAML at ``endpoints validate`` and ``endpoints plan``: a clear error naming the file, in bounded time and
memory (issue 13 item 13, and the standing guard "mutated YAML at validate").

Every case runs the real CLI in a child process whose address space is capped with ``RLIMIT_AS``
(:data:`MEMORY_CAP`): an expansion that is not bounded dies with ``MemoryError`` (a traceback) instead of passing.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "azure"
MEMORY_CAP = 1536 * 1024 * 1024  # the CLI validating a small folder uses ~250 MB of address space

BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1},"
    f" *a{i - 1}]\n"
    for i in range(1, 9)
)  # 10^9 scalars once expanded


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def endpoints(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process with a capped address space."""
    return subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
        preexec_fn=_cap_memory,
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            BOMB.encode(),
            "endpoint.yml:5: more than 100000 YAML nodes with aliases expanded (an alias bomb?); a spec holds a few "
            "hundred",
            id="billion-laughs",
        ),
        pytest.param(
            b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n",
            "endpoint.yml:1: nested more than 64 levels deep; a spec is a few levels deep",
            id="5000-deep-flow",
        ),
        pytest.param(
            "".join(f"{' ' * i}k{i}:\n" for i in range(1000)).encode() + b" " * 1000 + b"v\n",
            "endpoint.yml:65: nested more than 64 levels deep; a spec is a few levels deep",
            id="1000-deep-block",
        ),
        pytest.param(
            b"name: cars\ndescription: caf\xe9\n",
            "endpoint.yml:2: not UTF-8 text: byte 0xe9 at offset 27; save the file as UTF-8",
            id="latin-1",
        ),
        pytest.param(
            b"name: cars\n" + b"# padding\n" * 120_000,
            "endpoint.yml: file is larger than 1048576 bytes; a spec or stack file is far smaller",
            id="oversized",
        ),
    ],
)
def test_validate_refuses_hostile_yaml_naming_the_file(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "endpoint.yml").write_bytes(content)
    result = endpoints("validate", "endpoint.yml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [expected]


def test_validate_refuses_a_hostile_deployment_in_an_endpoint_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cars"
    shutil.copytree(REPO / "examples" / "car-classifier", folder, ignore=shutil.ignore_patterns("samples", "models"))
    dep = folder / "deployments" / "bob.yml"
    dep.write_bytes(BOMB.encode())
    result = endpoints("validate", str(folder))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{dep}:5: more than 100000 YAML nodes with aliases expanded" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(BOMB.encode(), ":5: more than 100000 YAML nodes with aliases expanded", id="billion-laughs"),
        pytest.param(
            b"config:\n  x: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n", ":2: nested more than 64", id="5000-deep"
        ),
        pytest.param(b"config:\n  \xff\xfe: 1\n", ":2: not UTF-8 text: byte 0xff at offset 10", id="not-utf-8"),
    ],
)
def test_plan_refuses_a_hostile_stack_file(tmp_path: Path, content: bytes, expected: str) -> None:
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    stack_file = tmp_path / "stacks" / "Pulumi.dev.yaml"
    stack_file.write_bytes(content)
    result = endpoints("plan", "--stack", "dev", "--project", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"{stack_file}{expected}"), result.stderr


# A bounded fuzz run: mutations of a valid endpoint folder's files, validated by the real CLI in one child process
# under the memory cap. Each outcome must be exit 0 or 1 with one located line per problem, never a traceback.
_FUZZ = r"""
import json, random, sys, traceback
from pathlib import Path
from typer.testing import CliRunner
from endpoints.cli.main import build_app

folder, seed, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
files = sorted(p for p in folder.rglob("*.yml"))
originals = {p: p.read_bytes() for p in files}
snippets = [b"&a ", b"*a", b"<<: *a\n", b"[", b"]", b"{", b"}", b"\x00", b"\xff", b"\t", b": ", b"- ", b"!!python/object:os.system ",
            b"\n  ", b"'", b'"', b"%YAML 1.1\n", b"---\n", b"? ", b"&b [*a, *a, *a, *a]", b"!!binary x", b"\xc3"]
# Whole hostile blocks put at the top of a file (still YAML, so they reach the loader): the shapes item 13 names. With
# the bounds of endpoints.safe_yaml removed, each one ends in MemoryError or RecursionError: a crash here.
hostile = [sys.argv[4].encode(), b"".join(b" " * i + b"k%d:\n" % i for i in range(1000)),
           b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", b"x: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n"]
rng = random.Random(seed)
app = build_app()
runner = CliRunner()
outcomes = {}
for n in range(rounds):
    target = rng.choice(files)
    data = bytearray(originals[target])
    if n % 10 == 0:  # one round in ten: a hostile block on top of the valid file
        data[0:0] = hostile[(n // 10) % len(hostile)]
    for _ in range(rng.randint(1, 6) if n % 10 else 0):
        pos = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.5:
            data[pos:pos] = rng.choice(snippets) * rng.choice([1, 1, 2, 50, 3000])
        elif op < 0.8 and data:
            del data[pos:pos + rng.randint(1, 20)]
        else:
            data[pos:pos] = bytes([rng.randrange(256)])
    target.write_bytes(bytes(data))
    result = runner.invoke(app, ["validate", "--json", str(folder)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        print("CRASH", n, target.name, repr(bytes(data)[:300]))
        traceback.print_exception(result.exception)
        sys.exit(2)
    report = json.loads(result.stdout)
    if result.exit_code != (0 if report["valid"] else 1) or any(not p["file"] for p in report["problems"]):
        print("BAD", n, target.name, result.exit_code, result.stdout[:500])
        sys.exit(2)
    outcomes[result.exit_code] = outcomes.get(result.exit_code, 0) + 1
    target.write_bytes(originals[target])
print(json.dumps(outcomes))
"""


def test_mutated_yaml_at_validate_never_crashes_and_stays_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "cars"
    shutil.copytree(FIXTURES / "online", folder)
    result = subprocess.run(
        [sys.executable, "-c", _FUZZ, str(folder), "13", "300", BOMB],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_cap_memory,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert sum(outcomes.values()) == 300
    assert outcomes.get("1", 0) > 0  # the mutations do break specs (the run is not vacuous)
