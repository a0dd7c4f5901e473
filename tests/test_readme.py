"""The README's two set-up commands: CI runs the test command verbatim; the main job command is the CLI's default."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.endswith("HF_HUB_OFFLINE=1 hf-rtp") and tests.endswith("HF_HUB_OFFLINE=1 pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must be the line .ci/run runs"
