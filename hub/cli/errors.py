"""What the `hub` commands say when something goes wrong: one or two lines, an exit code.

One mapper (`describe`) turns a known failure into a `Problem` that names the system, the
URL tried (credentials stripped) and what to check, whether the failure was raised here or
recorded by a Dagster run (`run_problem` reads the step failures back from the instance).
`HubGroup` applies it to every command; `hub --verbose` lets the full trace through.
The exit codes are `EXIT_CODES`, also in every command's help, the README and docs/cli.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import typer
from typer.core import TyperGroup

OK = 0
FAILED = 1  # the command ran and found a failure: a site's run failed, a check did not pass
USAGE = 2  # a bad option, argument, settings value or file
SYSTEM = 3  # a plant system (PTW, EAM, MES, ERP) could not be reached or refused the request
DATABASE = 4  # the hub's own database could not be used
EXIT_CODES = {
    OK: "success",
    FAILED: "the command ran and found a failure (a site's sync failed, a check did not pass)",
    USAGE: "bad usage: an option, argument, setting or input file is wrong",
    SYSTEM: "a plant system could not be reached or refused the request",
    DATABASE: "the hub's database could not be used (URL, driver, host, port, database, credentials, schema)",
    130: "stopped by Ctrl-C (SIGINT)",
    143: "stopped by SIGTERM",
}
EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."

SYSTEMS = ("PTW", "EAM", "MES", "ERP")


@dataclass
class Problem(Exception):
    """A failure as the operator reads it: `message` is one or two lines."""

    message: str
    exit_code: int = FAILED

    def __str__(self) -> str:
        return self.message


def safe_url(url: str) -> str:
    """The URL without user:password, so it can be shown anywhere."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+")


def scrub(text: str) -> str:
    """`text` with the credentials of every URL in it removed."""
    return _URL.sub(lambda m: safe_url(m.group(0)), text)


def targets(settings) -> dict[str, str]:
    """Where each system (and the database) is reached, by the names `describe` uses."""
    return {
        **{name: getattr(settings, name.lower()).url for name in SYSTEMS},
        "database": settings.database_url,
    }


# ------------------------------------------------------------------ the one mapper


def _connector_classes() -> dict[str, type]:
    """The connectors' error types by class name, so a failure recorded by a run (only its
    class name survives) is recognised as the same type as one raised here."""
    from hub.connectors.eam import SoapFault
    from hub.connectors.retry import TransientError, VendorRejected

    found: dict[str, type] = {}
    todo: list[type] = [TransientError, VendorRejected, SoapFault]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def describe(kinds: Iterable[str], message: str, where: dict[str, str]) -> Problem | None:
    """The Problem for a failure named by `kinds` (its class and base class names) with
    `message`, or None when it is none the hub knows. `where`: `targets(...)`."""
    kinds = list(kinds)
    message = scrub(message)
    connectors = _connector_classes()
    for kind in kinds:
        if kind in connectors:
            return _system_problem(connectors[kind], message, where)
        if kind in _DATABASE_KINDS:
            return database_problem(kind, message, where.get("database", "(the configured database URL)"))
        if kind == "SchemaNotReadyError":
            return Problem(message, DATABASE)
        if kind == "ConfigError":
            return Problem(message, USAGE)
    return None


def _system_problem(cls: type, message: str, where: dict[str, str]) -> Problem:
    from hub.connectors.eam import SoapFault
    from hub.connectors.retry import SystemUnavailable, TransientError, UntrustedCertificate

    system = next((name for name in SYSTEMS if message.startswith(name)), None)
    if system is None:
        return Problem(f"a plant system failed: {message}", SYSTEM)
    url = safe_url(where.get(system, "?"))
    variable = f"HUB_{system}__URL"
    what = message[len(system):].strip()
    if issubclass(cls, UntrustedCertificate):
        check = "set HUB_CA_BUNDLE to the CA that signed its certificate"
    elif issubclass(cls, SystemUnavailable):
        check = f"it failed repeatedly; check that the {system} is up at that address ({variable})"
    elif issubclass(cls, TransientError):
        check = f"check that the {system} is running and reachable there ({variable})"
    elif issubclass(cls, SoapFault):
        check = "check the EAM's SOAP service and HUB_EAM_WSDL"
    else:
        status = re.search(r"HTTP (\d{3})", message)
        code = int(status.group(1)) if status else None
        if code in (401, 403):
            check = f"check the {system} credentials (HUB_{system}__TOKEN, __USERNAME/__PASSWORD or __API_KEY)"
        elif code == 404:
            check = f"check the path in {variable} and the vendor flavor HUB_{system}__MAPPING"
        else:
            check = f"check what the {system} refused (hub --verbose shows the reply)"
    return Problem(f"{system} at {url}: {what}\n{check}", SYSTEM)


# The databases the hub's store runs on, with the URL prefix of each.
BACKENDS = {"postgresql": "postgresql+psycopg2://", "sqlite": "sqlite:///"}

_DATABASE_KINDS = {"OperationalError", "ArgumentError", "NoSuchModuleError", "InterfaceError", "ProgrammingError"}

# What a driver's message says, and which part of the URL it points at.
_DATABASE_PARTS = (
    (re.compile(r"password authentication failed|no password supplied|role .* does not exist|access denied", re.I), "auth"),
    (re.compile(r"database .* does not exist|unable to open database file|unknown database", re.I), "database"),
    (re.compile(r"could not translate host name|name or service not known|nodename nor servname", re.I), "host"),
    (re.compile(r"connection refused|timeout expired|timed out", re.I), "port"),
)


def database_problem(kind: str, message: str, url: str) -> Problem:
    """Which part of the database URL failed, with the URL (no credentials) and what to check."""
    shown = safe_url(url)
    if kind == "ArgumentError":
        part, check = "URL", "expected dialect+driver://host:port/database (e.g. sqlite:///.hub/hub.db)"
    elif kind == "NoSuchModuleError" or "No module named" in message:
        part, check = "driver", "the dialect+driver prefix (sqlite, postgresql+psycopg2) and that its package is installed"
    else:
        part = next((part for pattern, part in _DATABASE_PARTS if pattern.search(message)), "connection")
        check = {
            "auth": "the user and password in HUB_DATABASE_URL",
            "database": "that the database (or the SQLite file's folder) exists",
            "host": "the host name in HUB_DATABASE_URL",
            "port": "that the database server is running and listening on that host and port",
            "connection": "HUB_DATABASE_URL and the database server",
        }[part]
    first = message.strip().splitlines()[0] if message.strip() else kind
    return Problem(f"database ({part}) at {shown}: {first}\ncheck {check}", DATABASE)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, innermost first."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain[::-1]


def problem_of(exc: BaseException, where: dict[str, str] | None = None) -> Problem | None:
    """The Problem for an exception raised in a command, or None when the hub does not know it."""
    if isinstance(exc, Problem):
        return exc
    chain = _chain(exc)
    for link in chain:
        # A rule or mapping file's error names the file, line and field; the pydantic error it
        # was made from (its context) would read as the settings'.
        if type(link).__name__ == "ConfigError":
            return Problem(scrub(str(link)), USAGE)
    for link in chain:
        if type(link).__name__ == "ValidationError":
            return Problem(f"hub settings invalid: {_validation_text(link)}", USAGE)
    where = where if where is not None else _configured_targets()
    for link in chain:
        found = describe([cls.__name__ for cls in type(link).__mro__], str(link), where)
        if found is not None:
            return found
    return None


def _validation_text(exc) -> str:
    """Field and message of each pydantic error, never the input value (it may be a secret)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}" for error in exc.errors()
    ) + " (check the HUB_* variables and hub.env)"


def _configured_targets() -> dict[str, str]:
    try:
        from hub.settings import HubSettings

        return targets(HubSettings())
    except Exception:  # the settings themselves are broken: name the systems without URLs
        return {}


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Name `url` (not the settings' URL) when the database behind it fails."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise database_problem("ArgumentError", str(exc), url) from exc
    if backend not in BACKENDS:
        raise Problem(
            f"database (driver) at {safe_url(url)}: {backend!r} is not a database the hub stores to\n"
            f"check the URL's prefix: {' or '.join(BACKENDS.values())}",
            DATABASE,
        )
    try:
        yield
    except (SQLAlchemyError, ImportError) as exc:
        raise database_problem(type(exc).__name__, str(getattr(exc, "orig", None) or exc), url) from exc


# ------------------------------------------------------------------ failures recorded by Dagster runs


def run_problem(instance, run_ids: Iterable[str], where: dict[str, str]) -> tuple[Problem | None, str]:
    """The first step failure of these runs as a Problem (None when none is known), and the
    failures' full text for --verbose."""
    from dagster import DagsterEventType

    first, texts = None, []
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
            error = entry.dagster_event.step_failure_data.error
            if error is None:
                continue
            texts.append(f"{entry.step_key} (run {run_id}):\n{scrub(error.to_string())}")
            chain = []
            while error is not None:
                chain.insert(0, error)
                error = error.cause
            # A recorded message reads "module.Class: text".
            messages = [info.message.split(": ", 1)[-1].strip() for info in chain]
            found = next(
                (p for info, text in zip(chain, messages) if (p := describe([info.cls_name or ""], text, where))), None
            )
            headline = messages[0].partition("\n")[0]
            first = first or found or Problem(f"step {entry.step_key} failed: {scrub(headline)}", FAILED)
    return first, "\n".join(texts)


# ------------------------------------------------------------------ applied to every command


class HubGroup(TyperGroup):
    """The `hub` group: a known failure in any command is printed as its Problem and exits with
    its code; `hub --verbose` re-raises it so the trace is shown."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.params.get("verbose"):
                raise
            problem = problem_of(exc)
            if problem is None:
                problem = Problem(f"unexpected {type(exc).__name__}: {scrub(str(exc))} (hub --verbose shows the trace)", FAILED)
            fail(problem)


def fail(problem: Problem):
    """Print `problem` on stderr and exit with its code."""
    typer.echo(f"hub: {problem.message}", err=True)
    raise typer.Exit(problem.exit_code)
