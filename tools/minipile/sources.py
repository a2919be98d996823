"""Fetching and unpacking the pinned Debian source packages, and reading them back.

``fetch`` needs a Debian bookworm machine (``apt-get``, ``dpkg-deb``); nothing is
installed. The unpacked packages live under ``<sources>/root/<package>`` with a
``manifest.json`` of their versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hullft.paths import cache_root
from tools.minipile.params import DEBIAN_PACKAGES

logger = logging.getLogger(__name__)

SOURCES_ENV = "HULLFT_MINIPILE_SOURCES"
"""Names the sources folder, overriding the default under the hullft cache."""


class MissingSourceError(RuntimeError):
    """A source package (or tool) the build needs is not present."""


def default_sources_dir() -> Path:
    """``$HULLFT_MINIPILE_SOURCES``, else ``<hullft cache>/minipile-src``."""
    env = os.environ.get(SOURCES_ENV)
    return Path(env).expanduser() if env else cache_root() / "minipile-src"


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, capture_output=True, text=True, **kwargs)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _candidate_version(package: str) -> str:
    proc = _run(["apt-cache", "show", "--no-all-versions", package])
    match = re.search(r"^Version: (\S+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not match:
        raise MissingSourceError(
            f"apt knows no package {package!r}; run `apt-get update` on a Debian bookworm machine"
        )
    return match.group(1)


def fetch_sources(sources: Path, *, allow_other_versions: bool = False) -> dict[str, dict]:
    """Download and unpack the source packages into ``sources`` (no installation).

    Uses ``apt-get download PKG=VERSION`` into ``sources/debs`` (a ``.deb`` that is
    already there is reused, so one fetched by hand from snapshot.debian.org works
    too) and ``dpkg-deb -x`` into ``sources/root/PKG``; writes
    ``sources/manifest.json``. With ``allow_other_versions`` a package whose pinned
    version the mirror no longer has is fetched at apt's candidate version instead;
    the corpus built from it may then differ from the committed one.
    """
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingSourceError(f"`{tool}` not found: fetching needs a Debian-based machine")
    debs = sources / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}
    for package, pinned in sorted(DEBIAN_PACKAGES.items()):
        deb = _find_deb(debs, package, pinned)
        if deb is None:
            proc = _run(["apt-get", "download", f"{package}={pinned}"], cwd=debs)
            deb = _find_deb(debs, package, pinned)
            if deb is None and allow_other_versions:
                version = _candidate_version(package)
                logger.warning("%s %s unavailable; using %s", package, pinned, version)
                proc = _run(["apt-get", "download", f"{package}={version}"], cwd=debs)
                deb = _find_deb(debs, package, version)
            if deb is None:
                raise MissingSourceError(
                    f"could not download {package}={pinned}: {proc.stderr.strip()[-400:]}\n"
                    f"Run `apt-get update`; if the mirror no longer carries that version, put "
                    f"{package}_{pinned.replace(':', '%3a')}_<arch>.deb from "
                    f"https://snapshot.debian.org into {debs} and fetch again, or fetch with "
                    f"--allow-other-versions (the corpus will then differ from the committed one)."
                )
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
        found = re.search(r"^Version: (\S+)$", fields, re.MULTILINE)
        dest = sources / "root" / package
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        proc = _run(["dpkg-deb", "-x", str(deb), str(dest)])
        if proc.returncode != 0:
            raise MissingSourceError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        manifest[package] = {
            "version": found.group(1) if found else "",
            "deb": deb.name,
            "sha256": sha256_file(deb),
        }
        logger.info("unpacked %s %s", package, manifest[package]["version"])
    (sources / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _find_deb(debs: Path, package: str, version: str) -> Path | None:
    quoted = version.replace(":", "%3a")
    matches = sorted(debs.glob(f"{package}_{quoted}_*.deb"))
    return matches[0] if matches else None


@dataclass(frozen=True)
class SourceTree:
    """The unpacked packages under ``root/root/<package>`` plus their manifest."""

    root: Path
    versions: dict[str, str]

    @classmethod
    def open(cls, root: Path) -> SourceTree:
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise MissingSourceError(
                f"no minipile sources at {root} (missing manifest.json). Fetch them with\n"
                f"  python -m tools.minipile fetch --sources {root}   (from a hullft checkout)"
            )
        manifest = json.loads(manifest_path.read_text())
        return cls(root=root, versions={k: v["version"] for k, v in manifest.items()})

    def package(self, name: str) -> Path:
        path = self.root / "root" / name
        if name not in self.versions or not path.is_dir():
            raise MissingSourceError(
                f"source package {name!r} is missing under {self.root}. Fetch it with\n"
                f"  python -m tools.minipile fetch --sources {self.root}   (from a hullft checkout)"
            )
        return path
