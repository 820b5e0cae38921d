"""snorky_sync.extras.install_command: the pip command of an extra names the
extra's own requirements (snorky_sync is installed from a wheel or a clone,
so ``pip install "snorky_sync[redis]"`` would ask PyPI for a package it does
not have)."""
import pathlib

import pytest
import tomllib

from snorky_sync.extras import install_command

PYPROJECT = tomllib.loads((pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


@pytest.mark.parametrize("extra", ["redis", "jwt", "django", "demos"])
def test_the_command_installs_what_the_extra_declares(extra):
    command = install_command(extra)
    assert "snorky_sync[" not in command
    assert command == "pip install " + " ".join(f'"{req}"' for req in EXTRAS[extra])


def test_an_unknown_extra_is_an_error():
    with pytest.raises(ValueError, match="no extra 'redsi'"):
        install_command("redsi")
