"""The Dockerfile, checked without a Docker engine (there is none here).

What an image build would trip over and can be seen from here: the pip lines of each stage
resolve against constraints.txt on PyPI, every package they install is pinned there, the images
run as the non-root user the Job expects, the entry points exist, caches go to the writable
volume, and the CUDA base matches the torch build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from wft_operator import render

ROOT = Path(__file__).resolve().parents[2]
PYPI_SIMPLE = "https://pypi.org/simple"
# The CUDA build of each pinned torch's default Linux wheel on PyPI (its cu13 nvidia-* deps).
TORCH_CUDA = {"2.13.0": "13.0"}
# Installed by torch's own wheel, pinned by it: not ours to pin.
TORCH_OWNED = re.compile(r"^(triton|nvidia-.*|cuda-.*)$")


def parse_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """{stage name: [(INSTRUCTION, arguments)]}, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.search(r"\bAS\s+(\S+)", args, re.IGNORECASE)
            current = match.group(1) if match else args
            stages[current] = []
        stages[current].append((instruction, args.strip()))
    return stages


STAGES = parse_stages((ROOT / "Dockerfile").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[canonicalize_name(name)] = version.strip()
    return out


def chain(stage: str) -> list[tuple[str, str]]:
    """The instructions of `stage` and of the stages it is built FROM, oldest first."""
    instructions = STAGES[stage]
    base = instructions[0][1].split()[0]
    return (chain(base) if base in STAGES else []) + instructions


def build_chain(stage: str) -> list[tuple[str, str]]:
    """`chain`, plus the stages whose files it copies (COPY --from=...): what built the image."""
    out: list[tuple[str, str]] = []
    for instruction, args in chain(stage):
        source = re.match(r"--from=(\S+)", args) if instruction == "COPY" else None
        if source and source.group(1) in STAGES:
            out += build_chain(source.group(1))
        out.append((instruction, args))
    return out


def expand(spec: str) -> list[str]:
    """A pip argument as requirement strings; `.[a,b]` becomes the project's own requirements."""
    match = re.fullmatch(r"\.\[([\w,-]+)\]", spec.strip("\"'"))
    if not match:
        return [spec]
    project = PYPROJECT["project"]
    out = list(project["dependencies"])
    for extra in match.group(1).split(","):
        for req in project["optional-dependencies"][extra]:
            if req.startswith(project["name"] + "["):
                out += expand("." + req[len(project["name"]) :])
            else:
                out.append(req)
    return out


def pip_lines(stage: str) -> list[tuple[list[str], list[str]]]:
    """(options, requirements) of each `pip install` in the stage's chain."""
    lines = []
    for instruction, args in build_chain(stage):
        if instruction != "RUN" or "pip install" not in args:
            continue
        tokens = shlex.split(args.split("pip install", 1)[1].split("&&")[0])
        options, reqs, it = [], [], iter(tokens)
        for token in it:
            if token.startswith("-"):
                options.append(token)
                if token in ("-c", "-r"):
                    options.append(next(it))
            else:
                reqs += expand(token)
        lines.append((options, reqs))
    return lines


def final(stage: str, instruction: str) -> str:
    values = [a for i, a in chain(stage) if i == instruction]
    assert values, f"stage {stage} has no {instruction}"
    return values[-1]


def env_of(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in chain(stage):
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_both_targets_exist_and_install_with_the_constraints() -> None:
    assert {"operator", "trainer"} <= set(STAGES)
    for target in ("operator", "trainer"):
        lines = pip_lines(target)
        assert lines, f"{target} installs nothing"
        for options, _ in lines:
            assert options[options.index("-c") + 1] == "constraints.txt", options


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_images_run_as_the_non_root_uid_the_pods_use(target: str) -> None:
    user = final(target, "USER")
    uid = user.split(":")[0]
    # Numeric: runAsNonRoot can only verify a numeric USER.
    assert uid.isdigit() and int(uid) != 0, user
    assert int(uid) == render.TRAINER_UID  # the Job's runAsUser; the chart uses the same


@pytest.mark.parametrize(
    ("target", "module"), [("operator", "wft_operator"), ("trainer", "wft_trainer")]
)
def test_entry_points_exist(target: str, module: str) -> None:
    assert json.loads(final(target, "ENTRYPOINT")) == ["python", "-m", module]
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module}/__main__.py"


def test_console_script_exists() -> None:
    target = PYPROJECT["project"]["scripts"]["wft"]
    module, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_images_hold_the_product_and_not_the_stand_in(target: str) -> None:
    copied = {
        args.split()[0]
        for instruction, args in build_chain(target)
        if instruction == "COPY" and not args.startswith("--from")
    }
    assert "local/" not in copied and not any(c.startswith("local") for c in copied), copied
    assert {"operator/", "trainer/"} <= copied
    # What `pip install .` would package: operator/ and trainer/ only.
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"] == ["operator", "trainer"]


def test_the_product_never_imports_the_stand_in() -> None:
    """Nothing under operator/ or trainer/ imports wft_local (the CLI names its commands only)."""
    offenders = []
    for path in [*ROOT.glob("operator/**/*.py"), *ROOT.glob("trainer/**/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import)\s+wft_local\b", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_trainer_caches_go_to_the_writable_volume() -> None:
    env = env_of("trainer")
    assert env["WFT_CACHE_DIR"] == render.CACHE_DIR
    assert env["HF_HOME"] == f"{render.CACHE_DIR}/hf"
    for var in (
        "HOME",
        "TRITON_CACHE_DIR",
        "UNSLOTH_COMPILE_LOCATION",
        "NUMBA_CACHE_DIR",
        "TMPDIR",
    ):
        assert env[var].startswith(render.CACHE_DIR), var
    assert final("trainer", "WORKDIR") == render.CACHE_DIR  # Unsloth also writes to the cwd


def test_trainer_modules_are_byte_compiled_in_the_image() -> None:
    """The pod cannot write bytecode (PYTHONDONTWRITEBYTECODE, a read-only root): a module the
    image holds only as source is compiled at every Job's start (6-7 s on the H100, run 25)."""
    assert env_of("trainer")["PYTHONDONTWRITEBYTECODE"] == "1"
    runs = [a for i, a in build_chain("trainer") if i == "RUN"]
    assert any(re.search(r"python -m compileall\b.* /opt/venv$", a) for a in runs), runs
    assert not any("--no-compile" in a or "PIP_NO_COMPILE" in a for _, a in build_chain("trainer"))


def test_cuda_base_matches_the_torch_build() -> None:
    torch = pins()["torch"]
    base = next(a for i, a in STAGES[""] if i == "ARG" and a.startswith("CUDA_IMAGE="))
    match = re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:(\d+\.\d+)\.\d+-runtime-ubuntu24\.04", base)
    assert match, base
    assert match.group(1) == TORCH_CUDA[torch], f"torch {torch} is a CUDA {TORCH_CUDA[torch]} build"
    assert any("apt-get install" in a and "ffmpeg" in a for i, a in chain("trainer") if i == "RUN")


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_every_named_package_is_pinned(target: str) -> None:
    pinned = pins()
    for _, reqs in pip_lines(target):
        for req in reqs:
            name = canonicalize_name(Requirement(req).name)
            assert name in pinned, f"{target}: {req} has no pin in constraints.txt"
            assert Requirement(req).specifier.contains(pinned[name]), (req, pinned[name])


def _fetch_json(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except OSError as err:
        pytest.skip(f"PyPI not reachable ({err})")


def _resolve(reqs: list[str], find_links: str = "") -> list[tuple[str, str]]:
    """What `pip install --dry-run` would install here (this interpreter, Linux x86-64)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": find_links}
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
             "--report", str(report), "-c", str(ROOT / "constraints.txt"), *reqs],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
        if "Could not fetch URL" in result.stderr or "NewConnectionError" in result.stderr:
            pytest.skip("PyPI not reachable")
        assert result.returncode == 0, result.stderr[-3000:]
        installed = json.loads(report.read_text())["install"]
    return [(canonicalize_name(i["metadata"]["name"]), i["metadata"]["version"]) for i in installed]


def test_operator_stage_resolves_fully_pinned() -> None:
    """The operator image's Python is this one (3.11): resolve exactly what it installs."""
    reqs = [r for _, rs in pip_lines("operator") for r in rs]
    pinned = pins()
    resolved = _resolve(reqs)
    assert not any(name == "torch" for name, _ in resolved)  # the operator image has no torch
    unpinned = [(n, v) for n, v in resolved if pinned.get(n) != v]
    assert unpinned == [], "resolved to versions constraints.txt does not pin"


def _torch_stand_in(folder: Path, version: str) -> None:
    """A metadata-only torch wheel (local version +standin, which ==version matches).

    The real torch wheel's CUDA dependencies (nvidia-cudnn-cu13 and friends) are not installable
    here, so pip resolves everything else against this stand-in; test_pins_exist_for_the_image
    checks the real torch wheel exists for the image's Python.
    """
    dist = f"torch-{version}+standin.dist-info"
    with zipfile.ZipFile(folder / f"torch-{version}+standin-py3-none-any.whl", "w") as whl:
        whl.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}+standin\n"
        )
        whl.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{dist}/RECORD", "")


@pytest.mark.slow
def test_trainer_stage_resolves_fully_pinned(tmp_path: Path) -> None:
    """Every pip line of the trainer but the --no-deps one, resolved together with torch pinned."""
    pinned = pins()
    _torch_stand_in(tmp_path, pinned["torch"])
    reqs = [r for opts, rs in pip_lines("trainer") if "--no-deps" not in opts for r in rs]
    resolved = _resolve(reqs, find_links=str(tmp_path))
    unpinned = [
        (n, v)
        for n, v in resolved
        if pinned.get(n) != v and n != "torch" and not TORCH_OWNED.match(n)
    ]
    assert unpinned == [], "resolved to versions constraints.txt does not pin"


def test_pins_exist_for_the_image_python() -> None:
    """torch and the --no-deps packages have a wheel for the trainer image (CPython 3.12, x86-64)."""
    platforms = ["manylinux_2_39_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                 "manylinux2014_x86_64", "linux_x86_64"]  # fmt: skip
    tags = set(cpython_tags((3, 12), platforms=platforms))
    tags |= set(compatible_tags((3, 12), "cp312", platforms=platforms))
    pinned = pins()
    names = ["torch"] + [r for opts, rs in pip_lines("trainer") if "--no-deps" in opts for r in rs]
    assert len(names) > 1, "the trainer installs Unsloth with --no-deps"
    for req in names:
        name = canonicalize_name(Requirement(req).name)
        files = _fetch_json(f"{PYPI_SIMPLE}/{name}/")["files"]
        wheels = [
            parse_wheel_filename(f["filename"]) for f in files if f["filename"].endswith(".whl")
        ]
        fits = [w for w in wheels if str(w[1]) == pinned[name] and tags & set(w[3])]
        assert fits, f"no {name}=={pinned[name]} wheel for CPython 3.12 on Linux x86-64"
