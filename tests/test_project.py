"""The README's first two commands are the project's real entry points."""

from pathlib import Path

REPO = Path(__file__).parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_main_job_and_tests():
    main_job, tests = readme_commands()[:2]
    assert main_job.endswith("hub demo")
    assert tests.endswith("pytest -q")
    assert (REPO / "README.md").read_text(encoding="utf-8").index("```bash") < 40


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci/run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci.splitlines()


def test_dagster_pins_match():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for pin in ('"dagster==1.13.27"', '"dagster-webserver==1.13.27"', '"dagster-postgres==0.29.27"'):
        assert pin in pyproject
