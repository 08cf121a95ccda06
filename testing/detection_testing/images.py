"""The container images a local node runs, built on this machine without a registry or a Docker engine.

- the **base**: Debian with python3, debootstrapped by ``hack/build-base-image.sh`` (the stand-in for
  ``python:3.11-slim``; ~10 min once, Debian's mirror is the slow part);
- the **operator**: the project's ``Dockerfile``, built by buildah exactly as ``docker build`` would run
  it, with ``--build-arg BASE_IMAGE=<the base>``;
- the **pause** image: one static Go binary that sleeps until signalled (the Pods' sandbox);
- the **model server**: the base plus the simulator's stdlib-only model server.

Each is written once to ``.cache/images/<name>-<content hash>.tar`` (a docker-archive, which containerd's
``ctr images import`` and ``kind load image-archive`` both read) and rebuilt only when what goes into it
changes. buildah keeps its storage under ``.cache/images/buildah`` and runs with host networking, so it
creates no bridge and no CNI configuration on the host.

Command line, used by ``make node``::

    python -m detection_testing.images build
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .controlplane import _repo_root

__all__ = ["Image", "ImageError", "Images", "build_all", "main"]

#: Where images are pulled from on a node: nowhere (they are imported), so never try.
PULL_POLICY: Final = "Never"
_LIBRARY: Final = "docker.io/library"
_BASE_REF: Final = "localhost/detection-operator-base"
_BLOB_INFO_CACHE: Final = Path("/var/lib/containers")


class ImageError(RuntimeError):
    """An image could not be built; the message carries the tool's output."""


@dataclass(frozen=True)
class Image:
    """A built image: the name Pods use (``repository:tag``) and the archive a node imports."""

    repository: str
    tag: str
    archive: Path

    @property
    def name(self) -> str:
        """``repository:tag``, as written in a Pod's ``image``."""
        return f"{self.repository}:{self.tag}"

    @property
    def reference(self) -> str:
        """The fully qualified name a container runtime stores (``docker.io/library/...``)."""
        return f"{_LIBRARY}/{self.name}"


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise ImageError(f"{' '.join(argv[:3])} ... failed (exit code {done.returncode}):\n{tail}")
    return done.stdout


def _tree_files(root: Path, paths: Iterable[str]) -> Iterator[Path]:
    for name in paths:
        path = root / name
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*")):
            parts = set(file.relative_to(root).parts)
            if (
                file.is_file()
                and "__pycache__" not in parts
                and not any(p.endswith(".egg-info") for p in parts)
            ):
                yield file


def content_hash(root: Path, paths: Iterable[str], *extra: str) -> str:
    """A short hash of the files under ``paths`` (names and bytes) and of ``extra`` strings."""
    digest = hashlib.sha256()
    for file in _tree_files(root, paths):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16]


class Images:
    """Builds (once) and finds the images under ``cache`` (default ``<repo>/.cache/images``)."""

    def __init__(self, cache: Path | None = None, repo: Path | None = None) -> None:
        """Prepare the builder; nothing is built until a property is read."""
        root = repo or _repo_root()
        if root is None:
            raise ImageError("cannot find the repository root (no pyproject.toml above this file)")
        self.repo = root
        self.cache = (cache or root / ".cache" / "images").resolve()
        self._storage = self.cache / "buildah"
        #: Seconds each image took in this process (0 when it came from the cache).
        self.timings: dict[str, float] = {}

    # ---- the images ------------------------------------------------------------------------------

    def base_layout(self) -> Path:
        """The base image's OCI layout (debootstrapped once by ``hack/build-base-image.sh``)."""
        script = self.repo / "hack" / "build-base-image.sh"
        t0 = time.monotonic()
        out = _run([str(script)], env={**os.environ, "CACHE": str(self.cache)})
        self.timings.setdefault("base", round(time.monotonic() - t0, 1))
        for line in out.splitlines():
            if " in " in line and line.startswith("base image"):
                return Path(line.split(" in ", 1)[1].split(" (", 1)[0].strip())
        raise ImageError(f"{script} did not say where the base image is:\n{out}")

    def operator(self) -> Image:
        """The operator image from the project's Dockerfile, on the local base."""
        base = self.base_layout()
        files = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "operator")
        tag = content_hash(self.repo, files, base.name)
        return self._cached("detection-operator", tag, lambda image: self._bud(image, base))

    def pause(self) -> Image:
        """The sandbox image: a static binary that sleeps until SIGTERM/SIGINT/SIGKILL."""
        source = self.repo / "hack" / "pause"
        tag = content_hash(self.repo, ["hack/pause"], _go_version())
        return self._cached("detection-operator-pause", tag, lambda image: self._pause(image, source))

    def model_server(self) -> Image:
        """The base plus the simulator's standalone model server (``python3 /model_server.py``)."""
        base = self.base_layout()
        relative = "testing/detection_testing/model_server.py"
        tag = content_hash(self.repo, [relative], base.name)
        return self._cached(
            "detection-operator-model-server", tag, lambda image: self._script(image, base, relative)
        )

    def all(self) -> list[Image]:
        """Every image a node needs, built where missing: pause, operator, model server."""
        return [self.pause(), self.operator(), self.model_server()]

    # ---- building --------------------------------------------------------------------------------

    def _cached(self, repository: str, tag: str, build: Callable[[Image], None]) -> Image:
        image = Image(repository, tag, self.cache / f"{repository}-{tag}.tar")
        if image.archive.is_file():
            self.timings.setdefault(repository, 0.0)
            return image
        with self._locked():
            if not image.archive.is_file():  # built by a parallel run while we waited
                t0 = time.monotonic()
                build(image)
                self.timings[repository] = round(time.monotonic() - t0, 1)
                # Earlier versions of this image are never used again; each is hundreds of MB.
                for stale in self.cache.glob(f"{repository}-*.tar"):
                    if stale != image.archive and re.fullmatch(
                        rf"{re.escape(repository)}-[0-9a-f]{{16}}\.tar", stale.name
                    ):
                        stale.unlink()
        return image

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One build at a time in this cache: buildah's storage is shared by every run on the machine."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # containers/image keeps a blob-info cache there for root, whatever the storage root.
            created = not _BLOB_INFO_CACHE.exists()
            try:
                yield
            finally:
                if created:
                    shutil.rmtree(_BLOB_INFO_CACHE, ignore_errors=True)
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _buildah_argv(self, *args: str) -> list[str]:
        storage = self._storage
        return [
            "buildah",
            f"--root={storage / 'root'}",
            f"--runroot={storage / 'run'}",
            "--storage-driver=overlay",
            *args,
        ]

    def _env(self) -> dict[str, str]:
        (self._storage / "tmp").mkdir(parents=True, exist_ok=True)
        # buildah creates /etc/cni/net.d at start-up even with host networking unless its network
        # configuration lives elsewhere; TMPDIR: it stages layers under /var/tmp otherwise.
        conf = self._storage / "containers.conf"
        conf.write_text(f'[network]\nnetwork_config_dir = "{self._storage / "cni"}"\n')
        return {**os.environ, "TMPDIR": str(self._storage / "tmp"), "CONTAINERS_CONF": str(conf)}

    def _buildah(self, *args: str, cwd: Path | None = None) -> str:
        return _run(self._buildah_argv(*args), env=self._env(), cwd=cwd)

    def _base_in_storage(self, base: Path) -> str:
        ref = f"{_BASE_REF}:{base.name}"
        if self._buildah_ok("inspect", "--type=image", ref):
            return ref
        # skopeo, not `buildah pull oci:DIR`: buildah names the image after the directory, and a path
        # with a dot (".cache") is no valid image name.
        store = f"containers-storage:[overlay@{self._storage / 'root'}+{self._storage / 'run'}]{ref}"
        _run(["skopeo", "copy", "--quiet", f"oci:{base}:base", store])
        return ref

    def _buildah_ok(self, *args: str) -> bool:
        return subprocess.run(self._buildah_argv(*args), capture_output=True, env=self._env()).returncode == 0

    def _export(self, built: str, image: Image) -> None:
        partial = image.archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self._buildah("push", "--quiet", built, f"docker-archive:{partial}:{image.reference}")
        partial.rename(image.archive)  # atomic: a reader never sees half an archive
        self._buildah("rmi", built)

    def _runtime_args(self) -> list[str]:
        # runc's state under our storage rather than /run/runc; no network namespace, so no bridge.
        return [
            "--runtime=/usr/sbin/runc",
            f"--runtime-flag=root={self._storage / 'runc'}",
            "--network=host",
            "--pull=never",
        ]

    def _bud(self, image: Image, base: Path) -> None:
        """``docker build -t detection-operator:<tag> --build-arg BASE_IMAGE=<base> .``, with buildah."""
        ref = self._base_in_storage(base)
        built = f"localhost/{image.name}"
        self._buildah(
            "bud",
            *self._runtime_args(),
            "--layers=false",
            f"--build-arg=BASE_IMAGE={ref}",
            f"--tag={built}",
            "--file=Dockerfile",
            ".",
            cwd=self.repo,
        )
        self._export(built, image)

    def _pause(self, image: Image, source: Path) -> None:
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            binary = Path(tmp) / "pause"
            env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
            _run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."], env=env, cwd=source)
            self._commit_from("scratch", image, [(binary, "/pause")], ["/pause"])

    def _script(self, image: Image, base: Path, relative: str) -> None:
        source = self.repo / relative
        if not source.is_file():
            raise ImageError(f"{source} is missing: the model-server image needs it")
        ref = self._base_in_storage(base)
        self._commit_from(ref, image, [(source, f"/{source.name}")], ["python3", f"/{source.name}"])

    def _commit_from(
        self, base: str, image: Image, files: list[tuple[Path, str]], entrypoint: list[str]
    ) -> None:
        container = self._buildah("from", "--pull=never", base).strip()
        try:
            for src, dest in files:
                self._buildah("copy", "--chmod=0755", container, str(src), dest)
            entry = "[" + ", ".join(f'"{part}"' for part in entrypoint) + "]"
            self._buildah("config", f"--entrypoint={entry}", "--cmd=", "--user=65532:65532", container)
            built = f"localhost/{image.name}"
            self._buildah("commit", "--quiet", "--rm", container, built)
        except BaseException:
            self._buildah_ok("rm", container)
            raise
        self._export(built, image)


def _go_version() -> str:
    return subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()


def build_all(cache: Path | None = None) -> list[Image]:
    """Build every image a node needs where it is missing; return them."""
    return Images(cache).all()


def main(argv: list[str] | None = None) -> int:
    """``build``: build every node image into the cache, printing name, archive and time of each."""
    parser = argparse.ArgumentParser(prog="python -m detection_testing.images")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the base, pause, operator and model-server images (once)")
    build.add_argument("--cache", type=Path, default=None, help="default: <repo>/.cache/images")
    args = parser.parse_args(argv)
    images = Images(args.cache)
    try:
        built = images.all()
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for image in built:
        seconds = images.timings.get(image.repository, 0.0)
        state = "cached" if seconds == 0 else f"built in {seconds:.0f}s"
        print(f"{image.name}  {image.archive}  ({state})")
    if images.timings.get("base"):
        print(f"base image: {images.timings['base']:.0f}s", file=sys.stderr)
    shutil.rmtree(images.cache / "buildah" / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
