"""Overfit profiles (autograder/overfit_profile.py): the TOML file, which profile grades, and the flags."""

from __future__ import annotations

import argparse
import inspect
import math
import shutil
import tomllib
from pathlib import Path

import pytest

from autograder.overfit_profile import (
    FORCE_FLAG,
    PROFILES_DIR,
    OverfitChoice,
    OverfitData,
    ProfileRefused,
    add_grading_flags,
    choice_from_args,
    choose_profile,
    dumps_toml,
    grading_argv,
    load_profile,
    profile_document,
    write_profile,
)
from autograder.sandboxed.probes_overfit import overfit_train

CPU = load_profile(PROFILES_DIR / "cpu.toml")


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    """A profile folder with a calibrated cpu.toml and an uncalibrated cuda.toml."""
    folder = tmp_path / "profiles"
    write_profile(CPU, folder / "cpu.toml")
    write_profile(CPU.replace(device="cuda", calibrated=False, provenance={}), folder / "cuda.toml")
    return folder


def test_shipped_profiles_load_and_name_their_source() -> None:
    cuda = load_profile(PROFILES_DIR / "cuda.toml")
    assert CPU.device == "cpu" and CPU.calibrated and CPU.source == PROFILES_DIR / "cpu.toml" and CPU.name == "cpu"
    assert cuda.device == "cuda" and cuda.calibrated and cuda.source == PROFILES_DIR / "cuda.toml"
    for profile in (CPU, cuda):  # the pass mark sits between the reference's worst run and every caught variant
        margin = profile.provenance["min_margin"]
        assert profile.pass_map <= profile.provenance["reference_worst_map"] - margin + 1e-9, profile.name
        caught = [profile.provenance["broken_best"][name] for name in profile.provenance["caught"]]
        assert caught and max(caught) <= profile.pass_map - margin + 1e-9, profile.name


def test_written_profile_reads_back_equal(tmp_path: Path) -> None:
    provenance = {"date": "2026-11-30T00:00:00Z", "device_name": 'NVIDIA "H200" é', "margin": math.inf,
                  "empty": [], "maps": [1.0, 0.972], "broken_best": {"rpn loss zero": 0.224, "x": 0.0}}
    profile = CPU.replace(provenance=provenance)
    path = write_profile(profile, tmp_path / "deep" / "p.toml")
    again = load_profile(path)
    assert profile_document(again) == profile_document(profile)
    assert again.provenance["device_name"] == 'NVIDIA "H200" é'


@pytest.mark.parametrize("value", [float("nan"), -0.0, 1e-05, 2**40, "tab\tnew\nline\x7f", [1, 2.5, "a"]])
def test_dumps_toml_is_read_back_by_tomllib(value: object) -> None:
    text = dumps_toml({"table": {"key": value}})
    read = tomllib.loads(text)["table"]["key"]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(read)
    else:
        assert read == value


def test_dumps_toml_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="a.b: cannot write"):
        dumps_toml({"a": {"b": object()}})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("pass_map = 0.6", "pass_map = 0.0"), "pass_map"),
        (lambda t: t.replace("[evaluation]", "[evaluation]\ncolour = 1"), "evaluation.colour"),
        (lambda t: t.replace("iterations = 160\n", ""), "missing 'iterations'"),
        (lambda t: t.replace('kind = "synthetic"', 'kind = "video"'), "data.kind"),
        (lambda t: t.replace("image_size = 192", "image_size = 100"), "data.image_size"),
        (lambda t: t + "\n[[broken", "not a TOML file"),
    ],
)
def test_load_profile_names_the_file_and_the_problem(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit((PROFILES_DIR / "cpu.toml").read_text()))
    with pytest.raises(ValueError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_probe_params_are_the_probe_s_arguments() -> None:
    params = CPU.probe_params(num_classes=3)
    wanted = set(inspect.signature(overfit_train).parameters) - {"pkg", "inputs"}
    assert set(params) == wanted
    assert params["iterations"] == CPU.iterations and params["post_nms_topk"] == CPU.post_nms_topk


def test_each_device_gets_its_profile_and_an_uncalibrated_gpu_one_falls_back(profiles: Path) -> None:
    assert choose_profile("cpu", profiles_dir=profiles) == (load_profile(profiles / "cpu.toml"), [])
    profile, notes = choose_profile("cuda", profiles_dir=profiles)
    assert profile.source == profiles / "cpu.toml" and "not calibrated" in notes[0]
    write_profile(CPU.replace(device="cuda"), profiles / "cuda.toml")
    profile, notes = choose_profile("cuda", profiles_dir=profiles)
    assert (profile.source, profile.device, notes) == (profiles / "cuda.toml", "cuda", [])
    with pytest.raises(ValueError, match="device"):
        choose_profile("tpu", profiles_dir=profiles)


def test_a_profile_for_another_device_class_is_refused_unless_forced(profiles: Path) -> None:
    gpu = write_profile(CPU.replace(device="cuda"), profiles / "gpu_calibrated.toml")
    with pytest.raises(ProfileRefused, match=f"calibrated for device class 'cuda'.*{FORCE_FLAG}"):
        choose_profile("cpu", OverfitChoice(profile=gpu), profiles_dir=profiles)
    profile, notes = choose_profile("cpu", OverfitChoice(profile=gpu, force=True), profiles_dir=profiles)
    assert profile.device == "cuda" and notes and notes[0].startswith(f"FORCED ({FORCE_FLAG})")


def test_an_uncalibrated_profile_is_refused_unless_forced(profiles: Path) -> None:
    with pytest.raises(ProfileRefused, match="calibrated = false"):
        choose_profile("cuda", OverfitChoice(profile=profiles / "cuda.toml"), profiles_dir=profiles)
    (profiles / "cpu.toml").write_text((profiles / "cpu.toml").read_text().replace("calibrated = true", "calibrated = false"))
    with pytest.raises(ProfileRefused):
        choose_profile("cpu", profiles_dir=profiles)
    profile, _ = choose_profile("cpu", OverfitChoice(force=True), profiles_dir=profiles)
    assert not profile.calibrated


def test_describe_names_file_device_date_and_pass_mark() -> None:
    line = CPU.describe()
    for part in (str(PROFILES_DIR / "cpu.toml"), "device class cpu", CPU.provenance["date"], f"pass_map {CPU.pass_map:g}",
                 f"{CPU.iterations} iterations", CPU.data.sha256[:12]):
        assert part in line


def test_data_spec_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="data.num_images"):
        OverfitData(kind="subset", num_images=0, image_size=64)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-overfit", action="store_true")
    add_grading_flags(parser)
    return parser.parse_args(argv)


def test_flags_round_trip_for_grade_all(tmp_path: Path, profiles: Path) -> None:
    argv = ["--overfit-profile", str(profiles / "cpu.toml"), "--overfit-data", str(tmp_path), FORCE_FLAG]
    args = _parse(argv)
    assert grading_argv(args) == argv
    assert choice_from_args(args) == OverfitChoice(profiles / "cpu.toml", tmp_path, True)
    assert grading_argv(_parse([])) == []


def test_grade_refuses_a_wrong_profile_before_grading(profiles: Path, capsys: pytest.CaptureFixture) -> None:
    args = _parse(["--overfit-profile", str(profiles / "cuda.toml")])
    with pytest.raises(SystemExit) as info:
        choice_from_args(args)
    assert info.value.code == 2 and "calibrated = false" in capsys.readouterr().err
    assert choice_from_args(_parse(["--skip-overfit", "--overfit-profile", str(profiles / "cuda.toml")])).profile
    missing = profiles / "subset.toml"
    shutil.copy(profiles / "cpu.toml", missing)
    with pytest.raises(SystemExit):
        choice_from_args(_parse(["--overfit-profile", str(missing), "--overfit-data", str(profiles / "nowhere")]))
