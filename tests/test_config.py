"""Typed configs: strict conversion, validation messages, Hydra composition."""

from __future__ import annotations

import dataclasses

import pytest

from actors.cli import load_config, main
from hullft.config import (
    ConfigError,
    FinetuneConfig,
    RunConfig,
    SelectionConfig,
    build_config,
    config_to_dict,
)
from hullft.selection import METHODS


def test_defaults_round_trip_through_dict() -> None:
    cfg = RunConfig()
    assert build_config(RunConfig, config_to_dict(cfg)) == cfg


def test_every_field_is_documented_and_defaulted() -> None:
    import inspect

    for section in dataclasses.fields(RunConfig):
        cls = (
            section.type
            if isinstance(section.type, type)
            else getattr(__import__("hullft.config", fromlist=["x"]), str(section.type))
        )
        src = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            assert (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            assert f"{f.name}:" in src
            # the line after the field is its docstring
            after = src.split(f"    {f.name}:", 1)[1].split("\n", 2)[1].strip()
            assert after.startswith('"""'), f"{cls.__name__}.{f.name} has no docstring"


def test_unknown_key_names_key_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"selection\.nn.*valid keys.*'n'"):
        build_config(RunConfig, {"selection": {"nn": 3}})


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"selection": {"n": "ten"}}, r"selection\.n must be an integer"),
        ({"selection": {"n": True}}, r"selection\.n must be an integer"),
        ({"finetune": {"lr": -1.0}}, r"finetune\.lr must be > 0"),
        (
            {"finetune": {"bpb_mode": "fast"}},
            r"finetune\.bpb_mode must be one of \['rolling', 'paper'\]",
        ),
        (
            {"finetune": {"train_tokenization": "none"}},
            r"finetune\.train_tokenization must be one of \['bos', 'paper'\]",
        ),
        ({"selection": {"methods": ["knn", "magic"]}}, r"unknown \['magic'\]"),
        ({"selection": {"n": 300, "k": 200}}, r"n=300 > selection\.k=200"),
        ({"data": {"paths": "a.jsonl"}}, r"data\.paths must be a list"),
        ({"finetune": {"betas": [0.9]}}, r"finetune\.betas must have 2 elements"),
    ],
)
def test_bad_values_are_explained(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_config(RunConfig, data)


def test_ints_are_accepted_for_floats_and_lists_become_tuples() -> None:
    cfg = build_config(RunConfig, {"finetune": {"lr": 1}, "selection": {"methods": ["knn"]}})
    assert cfg.finetune.lr == 1.0 and isinstance(cfg.finetune.lr, float)
    assert cfg.selection.methods == ("knn",)


def test_method_names_are_the_registry_keys() -> None:
    assert set(SelectionConfig().methods) <= set(METHODS)
    every = SelectionConfig(methods=tuple(METHODS))  # each registered method is accepted
    assert every.methods == tuple(METHODS)
    with pytest.raises(ConfigError, match=r"unknown \['KNN'\]; choose from \['knn', 'sift'"):
        SelectionConfig(methods=("KNN",))


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FinetuneConfig().lr = 1.0  # type: ignore[misc]


def test_hydra_defaults_equal_dataclass_defaults_except_named_choices() -> None:
    cfg = load_config([])
    assert cfg.finetune == FinetuneConfig()
    assert cfg.selection == SelectionConfig()


def test_hydra_overrides_and_groups() -> None:
    cfg = load_config(["model=tiny", "selection.n=10", "finetune=plain"])
    assert cfg.model.name == "tiny-llama"
    assert cfg.selection.n == 10
    assert cfg.finetune.refresh_interval == 1


def test_hydra_unknown_override_names_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'finetune\.learning_rate'.*'lr'"):
        load_config(["finetune.learning_rate=1e-4"])


def test_env_interpolation_failure_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILE_DIR", raising=False)
    with pytest.raises(ConfigError, match="PILE_DIR"):
        load_config(["data=pile"])


def test_demo_and_smoke_experiments_compose() -> None:
    demo = load_config([], command="demo")
    assert demo.experiment.name == "demo"
    smoke = load_config(["experiment=smoke"])
    assert smoke.model.name == "tiny-llama" and smoke.embedder.name == "hashing"


def test_cli_config_command_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "selection.n=7"]) == 0
    assert "n: 7" in capsys.readouterr().out


def test_cli_bad_override_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "model=nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "model/nonexistent" in err and "tiny" in err


def test_cli_log_level_is_case_insensitive_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HULLFT_LOG_LEVEL", "debug")
    assert main(["config"]) == 0
    assert "not a log level" not in capsys.readouterr().err
    monkeypatch.setenv("HULLFT_LOG_LEVEL", "loud")
    assert main(["config"]) == 0
    assert "HULLFT_LOG_LEVEL='LOUD' is not a log level" in capsys.readouterr().err


def test_batch_jobs_is_auto_or_a_positive_integer_and_never_changes_the_run_id() -> None:
    from hullft.pipeline import row_config, run_id_for

    assert FinetuneConfig().batch_jobs == "auto"
    assert build_config(FinetuneConfig, {"batch_jobs": 8}).batch_jobs == 8
    for bad in (0, -1, "many", 1.5):
        with pytest.raises(ConfigError, match="batch_jobs"):
            build_config(FinetuneConfig, {"batch_jobs": bad}, "finetune")
    one = RunConfig(finetune=FinetuneConfig(batch_jobs=1))
    assert run_id_for(one) == run_id_for(RunConfig())
    # A run.json written before the field existed compares equal too.
    old = config_to_dict(RunConfig())
    del old["finetune"]["batch_jobs"]
    assert row_config(old) == row_config(one)
    assert run_id_for(RunConfig(finetune=FinetuneConfig(lr=1e-3))) != run_id_for(RunConfig())


@pytest.mark.parametrize(
    "override",
    [
        "experiment.run_id=../../x",
        "experiment.run_id=/tmp/x",
        "experiment.run_id=a/b",
        "experiment.run_id=..",
        "experiment.name=../../x",
        "experiment.name=/abs",
    ],
)
def test_run_id_and_name_must_be_one_path_component(override: str) -> None:
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError, match=rf"{key}=.*single path component"):
        load_config([override])


@pytest.mark.parametrize(
    "override",
    [
        "finetune.lr=inf",
        "finetune.lr=nan",
        "cluster.gpus_per_worker=inf",
        "finetune.time_budget_s=inf",
        "selection.sift_lambda=inf",
        "finetune.betas=[0.9,nan]",
        "bench.time_budgets_s=[0.0,inf]",
    ],
)
def test_non_finite_numbers_are_refused_with_the_key(override: str) -> None:
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number"):
        load_config([override])


def test_non_finite_refused_on_direct_construction() -> None:
    with pytest.raises(ConfigError, match=r"finetune\.lr must be a finite number"):
        FinetuneConfig(lr=float("inf"))


def test_finetune_paper_sets_the_published_procedure_end_to_end() -> None:
    paper = load_config(["finetune=paper"]).finetune
    assert (paper.train_tokenization, paper.bpb_mode) == ("paper", "paper")
    default = load_config([]).finetune
    assert (default.train_tokenization, default.bpb_mode) == ("bos", "rolling")
    with pytest.raises(ConfigError, match="train_tokenization"):
        FinetuneConfig(train_tokenization="none")  # type: ignore[arg-type]
