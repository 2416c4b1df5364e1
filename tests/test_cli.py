import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    WEB_AND_UI = {"fastapi", "starlette", "uvicorn", "pydantic", "websockets", "prompt_toolkit"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in WEB_AND_UI:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

    sys.meta_path.insert(0, Block())
    """
)


def test_the_command_line_starts_without_the_web_and_terminal_libraries():
    """A training machine (a GPU box without FastAPI or prompt_toolkit) can still run `multistream train` and
    `bench`: the server and the terminal chat load their libraries when they are used, not when the CLI parses."""
    code = BLOCKER + textwrap.dedent(
        """
        from multistream.cli import build_parser
        parser = build_parser()
        for argv in (["train", "--recipe", "tiny"], ["bench", "step", "--device", "cpu", "--streams", "1,6"],
                     ["bench", "train", "--variants", "invisible,visible"]):
            parser.parse_args(argv)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in WEB_AND_UI)
        assert not loaded, loaded
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_blocker_does_block():
    """(The test above would pass vacuously if the blocker let the libraries in.)"""
    code = BLOCKER + "import fastapi\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0 and "blocked by the test" in run.stderr


def test_input_wait_must_be_seconds_at_least_zero(capsys):
    import pytest

    from multistream.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["generate", "--input", "user=hi"]).input_wait == 0.5
    assert parser.parse_args(["generate", "--input", "user=hi", "--input-wait", "0"]).input_wait == 0.0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["generate", "--input", "user=hi", "--input-wait", bad])
        assert "expected seconds >= 0" in capsys.readouterr().err


def test_train_offers_every_recipe():
    """`--recipe` spells the names out (no torch import at parse time); a recipe added to the table is offered too."""
    from multistream.cli import build_parser
    from multistream.train.recipes import RECIPES

    parser = build_parser()
    for name in RECIPES:
        assert parser.parse_args(["train", "--recipe", name]).recipe == name
    from multistream.train.cli import RECIPE_NAMES

    assert set(RECIPE_NAMES) == set(RECIPES)
