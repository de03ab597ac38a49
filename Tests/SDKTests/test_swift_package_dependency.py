"""`BlastBeatBackend` as a versioned SwiftPM dependency, the way README.md tells a Swift user to add it.

A throwaway package depends on this repository by URL and version (``.package(url: "file://...", from:
"0.1.0")``) and on the product ``BlastBeatBackend``; ``swift build`` must build it and the program must run.
SwiftPM refuses a version-based dependency whose product contains a target built with unsafe flags
(``-enforce-exclusivity=unchecked`` was one, see Package.swift), so this fails if one comes back.

The repository is not touched: its committed HEAD is cloned (bare) into a temporary directory and the tag
``0.1.0`` is made there, on that commit, and never pushed. Uncommitted changes are not part of the test.
Slow (the dependency's Core, System and Backend targets are compiled): bounded to 240 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from sdk_helpers import REPO

SWIFT = os.environ.get("SWIFT", "swift")

MAIN = """\
import BlastBeatBackend

// Public API of the product: parse a request environment and name an instance identity.
let request = Request(environment: [(name: Array("PATH_INFO".utf8), value: Array("/dep".utf8))])
let node = try BackendNode(node: "dep", instance: .named("1"), endpoints: ["tcp://127.0.0.1:5000"])
print("path \\(request.path) identity \\(node.identity)")
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_package_builds_against_a_tagged_version(tmp_path):
    if shutil.which(SWIFT) is None:
        pytest.fail(f"{SWIFT} not found: the Swift toolchain is needed to build the dependent package")
    head = git("rev-parse", "HEAD", cwd=REPO).strip()
    upstream = tmp_path / "blastbeat.git"
    git("clone", "--quiet", "--bare", "--no-local", str(REPO), str(upstream), cwd=tmp_path)
    git("tag", "0.1.0", head, cwd=upstream)

    app = tmp_path / "app"
    (app / "Sources" / "App").mkdir(parents=True)
    (app / "Package.swift").write_text(textwrap.dedent(f"""\
        // swift-tools-version:6.1
        import PackageDescription

        let package = Package(
            name: "App",
            dependencies: [
                .package(url: "file://{upstream}", from: "0.1.0"),
            ],
            targets: [
                .executableTarget(
                    name: "App",
                    dependencies: [.product(name: "BlastBeatBackend", package: "blastbeat")]),
            ]
        )
        """))
    (app / "Sources" / "App" / "main.swift").write_text(MAIN)

    build = subprocess.run([SWIFT, "build", "--package-path", str(app)], capture_output=True, text=True,
                           timeout=240, env={**os.environ, "SWIFTPM_ENABLE_PLUGINS": "0"})
    assert build.returncode == 0, f"swift build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    assert "unsafe build flags" not in build.stdout + build.stderr
    resolved = (app / "Package.resolved").read_text()
    assert '"version" : "0.1.0"' in resolved, resolved
    assert head in resolved, resolved

    run = subprocess.run([str(app / ".build" / "debug" / "App")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "path /dep identity dep#1" in run.stdout
