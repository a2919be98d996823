"""`hullft COMMAND --help` is generated from the config directory and the typed
configs; a mistyped group option names the valid ones."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from actors.cli import COMMANDS, config_dir, main
from actors.config_help import MOST_CHANGED
from hullft import config as hc
from hullft.config_docs import field_docs, setting


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _groups_on_disk(root: Path) -> dict[str, list[str]]:
    return {
        d.name: sorted(f.stem for f in d.glob("*.yaml"))
        for d in root.iterdir()
        if d.is_dir() and any(d.glob("*.yaml"))
    }


def _listed(text: str) -> dict[str, list[str]]:
    """Group → options as the help's group table shows them."""
    table = text.split("config groups", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    listed: dict[str, list[str]] = {}
    group = ""
    for line in table:
        m = re.match(r"^  (\S+)?\s+(\w+)\*?(?:\s|$)", line)
        if not m or line.startswith(" " * 30):  # a wrapped description line
            continue
        group = m.group(1) or group
        listed.setdefault(group, []).append(m.group(2))
    return listed


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_group_and_option_under_the_config_dir(command, capsys) -> None:
    text = _help(command, capsys)
    assert {g: sorted(o) for g, o in _listed(text).items()} == _groups_on_disk(config_dir())
    for key in MOST_CHANGED[command]:
        assert f"  {key}=" in text


def test_help_follows_the_config_dir_it_finds(tmp_path, monkeypatch, capsys) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "finetune" / "fast.yaml").write_text(
        "# hullft run finetune=fast  — a larger learning rate\nlr: 1.0e-3\n"
    )
    monkeypatch.setenv("HULLFT_CONFIG_DIR", str(configs))
    text = _help("run", capsys)
    assert "fast" in _listed(text)["finetune"]
    assert "a larger learning rate" in text


def test_help_shows_defaults_and_docs_from_the_dataclasses(capsys) -> None:
    text = _help("run", capsys)
    assert f"  selection.n={hc.SelectionConfig().n}\n" in text
    doc = field_docs(hc.SelectionConfig)["n"]
    assert " ".join(doc.split()) in " ".join(text.split())
    assert "  experiment.limit=null\n" in text
    # The default choice of each group is marked; demo implies its experiment.
    assert re.search(r"^\s+finetune\s+default\*", text, re.M)
    assert re.search(r"^\s+demo\*", _help("demo", capsys), re.M)


def test_every_config_field_has_a_docstring() -> None:
    for section in dataclasses.fields(hc.RunConfig):
        cls = type(getattr(hc.RunConfig(), section.name))
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(field_docs(cls)), cls.__name__


def test_setting_rejects_unknown_keys() -> None:
    assert setting(hc.RunConfig(), "finetune.lr").default == hc.FinetuneConfig().lr
    for bad in ("finetune.lrr", "nope.lr", "finetune", "finetune.lr.x"):
        with pytest.raises(KeyError):
            setting(hc.RunConfig(), bad)


def test_mistyped_group_option_names_the_valid_ones(capsys) -> None:
    assert main(["config", "finetune=plian"]) == 2
    err = capsys.readouterr().err
    assert "choose one of: default, paper, plain" in err
    assert "did you mean finetune=plain?" in err
