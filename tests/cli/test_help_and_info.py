"""Help that stands alone (defaults, an example, no documents the user does not have), the
README's synopsis agreeing with the CLI's defaults, `invflow --version` and `invflow info`."""
import argparse
import re
from pathlib import Path

import pytest
import torch

import invflow
from invflow.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_subcommand_help_shows_defaults_and_an_example(command: str, capsys) -> None:
    text = help_text([command], capsys)
    assert "default" in text and "examples:" in text and f"invflow {command}" in text
    assert not re.search(r"DESIGN|STYLE|\.md\b|appendix", text), (
        "help mentions a document the user does not have"
    )


def test_every_option_says_its_default() -> None:
    """Options that take a value show or describe their default (flags default to off)."""
    for name, parser in subcommands().items():
        for action in parser._actions:
            if (
                action.option_strings
                and action.default is not False
                and action.default is not argparse.SUPPRESS
            ):
                formatted = parser._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in formatted, (name, action.option_strings, formatted)


def test_top_level_help_lists_every_command(capsys) -> None:
    text = help_text([], capsys)
    assert all(command in text for command in subcommands()) and "DESIGN" not in text


def readme_synopsis() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_readme_synopsis_lists_every_command_with_the_cli_defaults() -> None:
    parsers = subcommands()
    listed, command = set(), None
    for line in readme_synopsis():
        if line.startswith("invflow "):
            command = line.split()[1]
            if command.startswith("-"):  # `invflow --version`
                continue
            listed.add(command)
        assert command in parsers, line
        options = {o: a for a in parsers[command]._actions for o in a.option_strings}
        for option, value in re.findall(r"\[(-{1,2}[\w-]+) ([a-z0-9.]+)\]", line.split("#")[0]):
            default = options[option].default
            assert value in (str(default), repr(default)), (
                f"README shows {option} {value}, the CLI's default is {default}"
            )
    assert listed == set(parsers), f"README synopsis lacks {sorted(set(parsers) - listed)}"


def test_ci_installs_exactly_what_the_readme_says() -> None:
    install = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip install" in line]
    assert len(install) == 1 and install[0] in (ROOT / "README.md").read_text()
    assert "tensorboard" in install[0]


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"invflow {invflow.__version__} (torch {torch.__version__})"


def test_info_reports_what_a_bug_report_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("INVFLOW_CACHE", str(tmp_path))
    monkeypatch.delenv("INVFLOW_KERNEL_CACHE", raising=False)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "kernels").mkdir()  # the native kernels' cache: not a data set
    assert main(["info"]) == 0
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert rows["invflow"] == invflow.__version__ and rows["torch"] == torch.__version__
    assert rows["CUDA available"].startswith("yes" if torch.cuda.is_available() else "no")
    assert rows["NCCL available"].startswith("yes" if torch.distributed.is_nccl_available() else "no")
    assert rows["gloo available"] in ("yes", "no")
    assert rows["torch threads"].startswith(f"{torch.get_num_threads()} intra-op")
    assert rows["cache directory"].startswith(str(tmp_path)) and "$INVFLOW_CACHE" in rows["cache directory"]
    assert rows["data sets in the cache"] == "mnist"
    assert rows["CPU conditioner kernels"].startswith("not built yet")  # none in this cache
    assert "tensorboard" in rows


def test_info_build_kernels_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    from invflow.layers import conv_conditioner_kernels as loader

    monkeypatch.setenv("INVFLOW_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "_loaded", None)
    monkeypatch.setattr(loader, "_failure", None)
    monkeypatch.setenv(loader.ENV_SWITCH, "0")
    assert main(["info", "--build-kernels"]) == 1
    assert "not built (INVFLOW_NATIVE_KERNELS=0)" in capsys.readouterr().err
    monkeypatch.delenv(loader.ENV_SWITCH)

    def no_compiler():
        raise RuntimeError("Error building extension: c++ not found")

    monkeypatch.setattr(loader, "_load", no_compiler)
    assert main(["info", "--build-kernels"]) == 1
    captured = capsys.readouterr()
    assert "not built (RuntimeError: Error building extension: c++ not found)" in captured.err
    assert "unavailable (RuntimeError" in captured.out  # the info row says it too
