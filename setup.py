"""Packaging beside pyproject.toml: what the wheel carries besides the Python packages.

The board files, frozen manifests, dataset cards and the site's templates live at the top of the
checkout (`leaderboards/`, `datasets/`, `site/`), where contributors edit them; a wheel carries a
copy under `harness/_shipped/`, which `harness.core.paths.project_root` reads when xrbench is not
run from a checkout. Submission bundles stay in the repository.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {
    "leaderboards": ("*.toml",),
    "datasets": ("*.toml", "*/README.md", "*/*.toml", "*/splits/*.csv"),
    "site": ("templates/*.html", "static/*"),
}


class BuildWithDefinitions(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "harness" / "_shipped"
        for folder, patterns in SHIPPED.items():
            for pattern in patterns:
                for path in sorted((ROOT / folder).glob(pattern)):
                    copy = target / path.relative_to(ROOT)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copy)


setup(cmdclass={"build_py": BuildWithDefinitions})
