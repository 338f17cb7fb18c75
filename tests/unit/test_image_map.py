"""D1: the operator's image map decides what runs an Image (runtime/images.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from modelgate.runtime.images import ImageMap, ImageMapError, ImageNotRunnable, load_image_map, package_root

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def exe(tmp_path: Path) -> str:
    path = tmp_path / "serve-me"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_d1_map_rules_resolve_first_match_wins(exe: str) -> None:
    images = load_image_map(
        json.dumps(
            [
                {"image": f"{ECR}/my-model:*", "command": exe},
                {"image": f"{ECR}/*", "runtime": "sklearn"},
                {"image": "xgboost", "runtime": "sklearn"},  # the operator's rules come before the built-ins
            ]
        ),
        allow_command_images=False,
    )
    spec = images.resolve(f"{ECR}/my-model:latest")
    assert (spec.kind, spec.argv, dict(spec.env)) == ("command", (exe, "serve"), {})
    spec = images.resolve(f"{ECR}/other:1")
    assert (spec.kind, spec.argv) == ("sklearn", (sys.executable, "-m", "modelgate.containers", "sklearn", "serve"))
    assert spec.env == {"PYTHONPATH": package_root()}
    assert images.resolve("xgboost").kind == "sklearn"
    assert images.resolve("sagemaker-xgboost:1.7-1").kind == "xgboost"  # built-ins stay mapped


def test_d1_an_exact_rule_matches_only_that_image(exe: str) -> None:
    images = load_image_map(json.dumps({"rules": [{"image": "registry/model:1", "command": exe}]}), False)
    assert images.resolve("registry/model:1").argv == (exe, "serve")
    with pytest.raises(ImageNotRunnable):
        images.resolve("registry/model:10")


def test_d1_an_unmapped_image_names_itself_and_the_setting() -> None:
    with pytest.raises(ImageNotRunnable) as e:
        ImageMap().resolve(f"{ECR}/my-model:latest")
    assert e.value.reason == (
        f"Image '{ECR}/my-model:latest' is not mapped to anything modelgate can run: the operator can map it to a "
        "built-in runtime (xgboost, sklearn) or to an allowed local executable in MODELGATE_IMAGE_MAP."
    )


def test_d1_command_images_are_off_by_default(exe: str) -> None:
    with pytest.raises(ImageNotRunnable) as e:
        ImageMap().resolve(f"command:{exe}")
    assert e.value.reason == (
        f"Image 'command:{exe}' cannot be run: command: images are off on this server; the operator can allow them "
        "with MODELGATE_ALLOW_COMMAND_IMAGES=true, or map the image to an allowed executable or a built-in runtime "
        "in MODELGATE_IMAGE_MAP."
    )
    assert ImageMap(allow_command_images=True).resolve(f"command:{exe}").argv == (exe, "serve")
    # An explicit rule of the operator's runs it even with command: images off.
    assert load_image_map(json.dumps([{"image": "command:/bin/bash", "command": exe}]), False).resolve(
        "command:/bin/bash"
    ).argv == (exe, "serve")


def test_d1_map_from_a_file(tmp_path: Path, exe: str) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps([{"image": "mine:*", "command": exe}]))
    assert load_image_map(str(path), False).resolve("mine:2").argv == (exe, "serve")
    assert load_image_map(None, True) == ImageMap((), True)
    assert load_image_map("  ", False) == ImageMap((), False)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("not json", "MODELGATE_IMAGE_MAP file not json cannot be read"),
        ("[1, 2", "MODELGATE_IMAGE_MAP (inline JSON) is not valid JSON"),
        ('{"image": "x"}', "must be a JSON list of rules"),
        ("[1]", "rule 1: a rule is an object"),
        ('[{"image": "x", "runtime": "xgboost", "args": []}]', "rule 1: unknown key(s) args"),
        ('[{"image": "", "runtime": "xgboost"}]', "rule 1: image must be a non-empty string"),
        ('[{"image": "x"}]', "rule 1: give exactly one of runtime or command"),
        ('[{"image": "x", "runtime": "xgboost", "command": "/bin/true"}]', "give exactly one of runtime or command"),
        ('[{"image": "x", "runtime": "pytorch"}]', "rule 1: runtime must be one of xgboost, sklearn, not 'pytorch'"),
        ('[{"image": "x", "command": "bin/true"}]', "rule 1: command must be an absolute path, not 'bin/true'"),
        ('[{"image": "x", "command": "/no/such/exe"}]', "rule 1: command /no/such/exe cannot be used: No such file"),
        ('[{"image": "x", "command": "TMP/plain"}]', "command TMP/plain is not an executable regular file"),
        ('[{"image": "x", "command": "/bin"}]', "command /bin is not an executable regular file"),
        ('[{"image": "x", "runtime": "sklearn"}, {"image": "y"}]', "rule 2: give exactly one"),
    ],
)
def test_d1_bad_maps_are_refused_with_the_rule_and_the_reason(tmp_path: Path, rules: str, message: str) -> None:
    (tmp_path / "plain").write_text("not executable")
    with pytest.raises(ImageMapError) as e:
        load_image_map(rules.replace("TMP", str(tmp_path)), False)
    assert message.replace("TMP", str(tmp_path)) in str(e.value)
