"""The compile cache across Jobs, against moto's S3: a second Job finds the first Job's kernels
in its compilers' folders, writes nothing when it added nothing, and a broken or hostile
archive costs the Job time, never the run. (Only a GPU compiles anything: `for_run` is None
on the CPU, so these tests build the cache object directly; the H200 figures are in
docs/benchmarks.md.)"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import boto3
import pytest
from wft_trainer.compile_cache import FOLDERS, CompileCache, ensure_folders
from wft_trainer.storage import S3Store

pytestmark = pytest.mark.integration
BUCKET = "compile-cache"
URI = f"s3://{BUCKET}/cache/compiled/abc.tar.gz"


@pytest.fixture
def store(aws_env: str, tmp_path: Path) -> S3Store:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return S3Store.from_spec(cache_dir=tmp_path / "s3-cache")


def job_folders(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fresh pod: empty compiler folders, named by the environment as the image does."""
    for variable in FOLDERS:
        monkeypatch.delenv(variable, raising=False)
    return ensure_folders(root)


def test_a_second_job_finds_the_first_jobs_kernels(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = CompileCache(store, URI, job_folders(tmp_path / "job1", monkeypatch))
    assert not first.restore()
    assert "none yet" in first.notes[-1]
    # What the compilers leave behind: a kernel, a graph, a lock that must not travel.
    (first.folders["triton"] / "ab12").mkdir()
    (first.folders["triton"] / "ab12" / "kernel.cubin").write_bytes(b"\x7fELF" + bytes(5000))
    (first.folders["inductor"] / "fxgraph").mkdir()
    (first.folders["inductor"] / "fxgraph" / "graph.py").write_text("def call(args): ...\n")
    (first.folders["inductor"] / "fxgraph" / "graph.lock").write_text("")
    (first.folders["unsloth"] / "unsloth_compiled_module_whisper.py").write_text("# patched\n")
    assert first.save()
    metrics = first.as_metrics().model_dump(by_alias=True)
    assert {k: metrics[k] for k in ("uri", "restoredFiles", "saved")} == {
        "uri": URI,
        "restoredFiles": 0,
        "saved": True,
    }
    # What torch compiled in this process (nothing here): seconds and cache counters.
    assert metrics["compiler"]["compileSeconds"] >= 0

    second = CompileCache(store, URI, job_folders(tmp_path / "job2", monkeypatch))
    assert second.restore()
    assert second.folders["triton"] == tmp_path / "job2" / "triton"
    cubin = second.folders["triton"] / "ab12" / "kernel.cubin"
    assert cubin.read_bytes() == b"\x7fELF" + bytes(5000)
    assert (second.folders["inductor"] / "fxgraph" / "graph.py").exists()
    assert not (second.folders["inductor"] / "fxgraph" / "graph.lock").exists()
    assert (second.folders["unsloth"] / "unsloth_compiled_module_whisper.py").exists()
    assert "restored 3 files" in second.notes[-1]
    # It compiled nothing new: the archive is not written again.
    assert not second.save()
    assert second.notes[-1] == "compile cache: nothing new to save"

    # A third Job of other shapes adds kernels: the archive grows, the old ones stay.
    (second.folders["triton"] / "cd34").mkdir()
    (second.folders["triton"] / "cd34" / "kernel.cubin").write_bytes(b"\x7fELF" + bytes(10))
    assert second.save()
    third = CompileCache(store, URI, job_folders(tmp_path / "job3", monkeypatch))
    assert third.restore()
    assert sorted(p.name for p in third.folders["triton"].iterdir()) == ["ab12", "cd34"]


def test_the_environments_folders_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The trainer image names Triton's and Unsloth's folders on its writable volume.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "volume" / "triton"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    folders = ensure_folders(tmp_path / "work")
    assert folders["triton"] == tmp_path / "volume" / "triton"
    assert folders["inductor"] == tmp_path / "work" / "inductor"
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "work" / "inductor")


def test_a_broken_or_hostile_archive_is_skipped(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes(URI, b"not a gzip file")
    cache = CompileCache(store, URI, job_folders(tmp_path / "job", monkeypatch))
    assert not cache.restore()
    assert "could not restore" in cache.notes[-1]

    # A member that climbs out of its folder is refused, and nothing lands outside.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        body = b"owned"
        info = tarfile.TarInfo("triton/../../escaped.txt")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    store.put_bytes(URI, buffer.getvalue())
    assert not cache.restore()
    assert "could not restore" in cache.notes[-1]
    assert not list(tmp_path.rglob("escaped.txt"))
