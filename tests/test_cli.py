"""The command line as a user meets it: progress with the time left, no noise, help without
markup, docs that stand alone, and make targets that do not reinstall."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqflows.app import cli
from seqflows.app.cli import main
from seqflows.app.convert import SOURCES
from seqflows.app.progress import Progress, format_duration, seconds_left

from helpers import TINY_BALLS

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_BALLS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m seqflows train`` of a tiny 1-AF, its output a pipe (as in a log or CI)."""
    pytest.importorskip("lightning")
    folder = tmp_path_factory.mktemp("cli") / "run"
    command = [sys.executable, "-m", "seqflows", "train", "bouncing_balls_1af"]
    command += ["--out", str(folder), "--max-steps", "4", *TINY]
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=environment, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr
    return folder, completed


def test_train_output_shows_progress_and_no_lightning_noise(trained) -> None:
    _, completed = trained
    output = completed.stdout + completed.stderr
    for noise in ("litlogger", "litmodels", "Tip:", "TPU available", "GPU available: False"):
        assert noise not in output, noise
    assert "`Trainer.fit` stopped" not in output
    # What matters stays: the device line seqflows prints, and the run's summary.
    assert "seqflows: training 1-AF" in completed.stderr and "device cpu" in completed.stderr
    summary = json.loads(completed.stdout)  # stdout: the summary alone
    assert summary["steps"] == 4
    # Not a terminal: progress as lines with the time left on stderr, not a redrawn bar.
    line = r"^train: 4/4 steps \(100%\), \d+:\d\d elapsed, 0:00 left, loss .*validation nats/dim"
    assert re.search(line, completed.stderr, re.MULTILINE), completed.stderr
    assert "\r" not in output


def test_evaluate_shows_progress_on_stderr_and_keeps_json_valid(trained, capsys) -> None:
    checkpoint = str(trained[0] / "checkpoints" / "best.ckpt")
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--json", "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout: the JSON object and nothing else
    assert result["sequences"] == 6
    assert re.search(r"evaluate test: 3/3 batches \(100%\), \d+:\d\d elapsed", captured.err)
    assert main(["evaluate", checkpoint, "--json", "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert json.loads(quiet.out)["nats_per_dim"] == result["nats_per_dim"] and quiet.err == ""


def test_progress_lines_are_spaced_and_give_the_time_left() -> None:
    log = io.StringIO()
    with Progress(4, "train", "steps", initial=2, stream=log, interval=0.0, bar=False) as shown:
        shown.update()
        shown.set_postfix("loss 1.5")
        shown.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("train: 3/4 steps (75%), 0:00 elapsed, ")
    assert lines[1].endswith("0:00 left, loss 1.5")  # written once, though closed after it
    sparse = io.StringIO()
    with Progress(100, "evaluate", "batches", stream=sparse, interval=3600.0, bar=False) as shown:
        for _ in range(100):
            shown.update()
    assert sparse.getvalue().count("\n") == 1  # only the last line within the interval
    # The rate of this session: steps done before it (a resumed run) do not count.
    assert seconds_left(10, 40, 30.0) == 90.0 and seconds_left(0, 40, 30.0) is None
    assert format_duration(3725) == "1:02:05" and format_duration(59.6) == "1:00"


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _commands() -> list[tuple[str, ...]]:
    names = [(name,) for name, *_ in cli.SUBCOMMANDS]
    return [(), *names, *(("convert", source) for source in SOURCES)]


def test_help_has_no_markup_and_no_repeated_text(capsys) -> None:
    top = _help(capsys)
    for name, *_ in cli.SUBCOMMANDS:  # every subcommand listed once
        assert len(re.findall(rf"^\s+{name}\b", top, re.MULTILINE)) == 1, name
    for command in _commands():
        text = _help(capsys, *command)
        assert text.startswith(f"usage: seqflows {' '.join(command)}".rstrip()), command
        # reStructuredText (``x``, :func:`x`) or Markdown (`x`) is for docs, not a terminal
        assert "`" not in text and not re.search(r":\w+:", text), (command, text)
        flat = " ".join(text.split())
        sentences = [s for s in re.split(r"(?<=[.;])\s", flat) if len(s) > 30]
        assert len(sentences) == len(set(sentences)), (command, sentences)
    from reproduction.__main__ import main as reproduction_main

    for command in ("reproduce", "motion"):  # the reproduction's own command line, alike
        with pytest.raises(SystemExit) as stop:
            reproduction_main([command, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: python -m reproduction {command}"), text
        assert "`" not in text and not re.search(r":\w+:", text), (command, text)
    reproduce = " ".join(_help(capsys, "reproduce").split())  # seqflows reproduce: forwarded
    for explained in ("trains every model", "summary.json", "time left", "interruption"):
        assert explained in reproduce
    assert "docstring" not in reproduce


def test_the_moved_commands_still_run_from_a_checkout_with_a_deprecation_line(tmp_path, capsys):
    """seqflows motion and reproduce moved to python -m reproduction (issue 25): from a checkout
    they run it, after one line saying where they went."""
    out = tmp_path / "motion"
    tiny = ["--steps", "2", "--num-train", "8", "--num-test", "4", "--no-plot"]
    assert main(["motion", *tiny, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "seqflows: warning: seqflows motion is deprecated: run python -m reproduction motion "
        "(make motion) from a checkout of the repository\n"
    )
    assert "true process" in captured.out and (out / "results.json").is_file()


def test_docs_stand_alone() -> None:
    """The docs cite no file outside the repository, and every relative link resolves."""
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    documents += sorted((ROOT / "benchmarks").glob("*.md"))
    assert len(documents) >= 3
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for outside in ("reference-facts", "../shared", "/work/", "shared/spec", "shared/data"):
            assert outside not in text, (document.name, outside)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address, or a section of the same page
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), (document.name, target)


def test_committed_files_are_not_ignored() -> None:
    """results/summary.json and results/tables.md are committed results, not ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert listed.returncode == 0 and listed.stdout == ""
    tracked = subprocess.run(
        ["git", "ls-files", "results/summary.json", "results/tables.md"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert tracked.stdout.split() == ["results/summary.json", "results/tables.md"]


@pytest.fixture
def make_copy(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml in a folder whose .venv/bin/python logs its calls."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text('#!/bin/sh\necho "python $*" >> calls.log\n')
    python.chmod(0o755)
    (tmp_path / ".venv" / ".torch").touch()
    for older in ("pyproject.toml", ".venv/.torch"):  # older than every stamp make writes
        os.utime(tmp_path / older, (1e9, 1e9))
    return tmp_path


def _make(folder: Path, *arguments: str) -> tuple[str, str]:
    """Runs make in ``folder``: its output and the stub python's calls."""
    done = subprocess.run(["make", *arguments], capture_output=True, text=True, cwd=folder)
    assert done.returncode == 0, done.stderr
    calls = folder / "calls.log"
    log = calls.read_text() if calls.is_file() else ""
    calls.unlink(missing_ok=True)
    return done.stdout, log


def test_make_test_avx2_runs_the_suite_with_the_avx512_kernels_off(make_copy: Path) -> None:
    python = make_copy / ".venv" / "bin" / "python"
    python.write_text(
        '#!/bin/sh\necho "$ONEDNN_MAX_CPU_ISA $ATEN_CPU_CAPABILITY $MKL_ENABLE_INSTRUCTIONS '
        'python $*" >> calls.log\n'
    )
    (make_copy / ".venv" / ".installed-dev").touch()  # newer than pyproject.toml: no pip
    output, calls = _make(make_copy, "test-avx2", "PYTEST_ARGS=-k x")
    assert calls == "AVX2 avx2 AVX2 python -m pytest -k x\n"


def test_make_targets_do_not_reinstall_when_nothing_changed(make_copy: Path) -> None:
    output, calls = _make(make_copy, ".venv/.installed-train")
    assert "pip --disable-pip-version-check install -e .[train]" in calls  # the first time
    output, calls = _make(make_copy, "-n", "run")  # the second time: no pip
    assert "pip" not in output and "seqflows train" in output and "--no-progress" not in output
    # An extra installed with one that includes it is installed: make run after make test.
    (make_copy / ".venv" / ".installed-train").unlink()
    _make(make_copy, ".venv/.installed-dev")
    output, calls = _make(make_copy, ".venv/.installed-train", ".venv/.installed-plot")
    assert calls == "" and "installed with seqflows[dev]" in output
    assert "pip" not in _make(make_copy, "-n", "run")[0]
    # A changed pyproject.toml (newer than the stamps): installed again.
    for stamp in (make_copy / ".venv").glob(".installed-*"):
        os.utime(stamp, (1.1e9, 1.1e9))
    os.utime(make_copy / "pyproject.toml", (1.2e9, 1.2e9))
    assert "install -e .[train]" in _make(make_copy, ".venv/.installed-train")[1]


def test_configs_lists_whole_sentences_wrapped_beside_the_names(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    names = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert names == sorted(path.stem for path in (ROOT / "configs").glob("*.yaml"))
    descriptions = " ".join(line.strip() for line in lines).split()
    for name, following in zip(names, [*names[1:], None], strict=True):
        start = descriptions.index(name) + 1
        end = descriptions.index(following) if following else len(descriptions)
        description = " ".join(descriptions[start:end])
        assert description.endswith((".", "?", "!")), f"{name}: {description}"
    # The first sentence of a comment that spans lines, not its first line.
    assert "this is the setting behind the paper's -3.57." in " ".join(descriptions)


def test_a_misspelled_configuration_suggests_the_closest_in_one_line(tmp_path, capsys) -> None:
    assert main(["train", "mmnist_1fa", "--out", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "seqflows: error: configuration file not found: mmnist_1fa is neither a file nor a "
        "shipped experiment; did you mean mmnist_1af? (seqflows configs lists them)\n"
    )
    assert not (tmp_path / "run").exists()
    assert main(["train", "nothing_like_it", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "did you mean" not in error and "bair_1af" not in error
    assert error.endswith("(seqflows configs lists them)\n")


def test_training_without_lightning_names_the_extra_in_one_line(tmp_path, capsys) -> None:
    """A plain ``pip install seqflows`` has no Lightning: ``train`` says which extra it needs."""
    script = (
        "import sys\n"
        "sys.modules['lightning'] = sys.modules['lightning.pytorch'] = None\n"
        "from seqflows.app.cli import main\n"
        f"sys.exit(main(['train', 'bouncing_balls_1af', '--out', {str(tmp_path / 'run')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "seqflows: error: seqflows train needs Lightning: pip install 'seqflows[train]'\n"
    )
    assert not (tmp_path / "run").exists()
