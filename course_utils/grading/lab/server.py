"""The course's Jupyter server extension: the grading workspace on first use, and Validate's summary.

Enabled by ``make setup`` (``python -m course_utils.grading lab enable``) in place of nbgrader's
``validate_assignment`` extension, whose two routes it serves with the same JSON:

* ``POST /assignments/validate``: ``course_utils.grading.lab.validate`` (a per-task summary first; a lesson
  answers that there is nothing to grade);
* ``GET /nbgrader_version``: the version check of nbgrader's Validate button.

When the server's root holds the course (``nbgrader_config.py`` beside ``solutions/``, as with ``make lab``),
it also creates the grading workspace and the exchange on start (``ensure_workspace``), so the formgrader
and the Assignment List work from a fresh clone.

Every formgrader page (where the instructor opens students' notebooks) gets a Content-Security-Policy that
forbids loading anything from elsewhere (``FORMGRADER_CSP``: images only from the server or carried as
data, no outside script, style, font or connection), so a submission cannot make the instructor's browser
call out (a tracking pixel) even if something slipped past the sanitizer. The formgrader's own scripts are
inline and use ``eval`` (underscore's templates), hence those two allowances; MathJax, which nbconvert
loads from a CDN, does not load, so formulas show as TeX there.

    $ jupyter server extension list 2>&1 | grep course_utils   # course_utils.grading.lab.server enabled
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader import __version__ as nbgrader_version
from nbgrader.server_extensions.validate_assignment.handlers import ValidateAssignmentHandler
from tornado import web

#: nbgrader's authoring sidebar, for instructors only
AUTHORING = "@jupyter/nbgrader:create-assignment"
FORMGRADER_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'self'; form-action 'self'; base-uri 'self'; object-src 'none'"
)


class FormgraderPolicy(web.OutputTransform):
    """Puts ``FORMGRADER_CSP`` on every response under ``<base_url>formgrader`` (tornado calls it per request)."""

    def __init__(self, request, prefix: str = "/formgrader"):
        super().__init__(request)
        self.applies = request.path.startswith(prefix)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if self.applies:
            headers["Content-Security-Policy"] = FORMGRADER_CSP
        return status_code, headers, chunk


class SummaryValidateHandler(ValidateAssignmentHandler):
    """nbgrader's Validate route, answered by ``validate.validate_notebook``."""

    def validate_notebook(self, path: str) -> dict:
        from course_utils.grading.lab.validate import validate_notebook

        root = Path(self.settings["root_dir"]).resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise web.HTTPError(403, "Access denied: path outside allowed directory")
        try:
            return {"success": True, "value": validate_notebook(target, self.load_config())}
        except Exception as error:  # the dialog shows it; the log keeps the traceback
            self.log.error(traceback.format_exc())
            return {"success": False, "value": f"Validate could not run {path}: {error}"}


class VersionHandler(JupyterHandler):
    """The version handshake of nbgrader's lab extension (same answer as nbgrader's)."""

    @web.authenticated
    def get(self):
        same = self.get_argument("version") == nbgrader_version
        self.finish(
            json.dumps(
                {"success": True}
                if same
                else {
                    "success": False,
                    "message": f"The nbgrader lab extension ({self.get_argument('version')}) and server "
                    f"({nbgrader_version}) differ: run make setup again.",
                }
            )
        )


def _jupyter_server_extension_points():
    return [{"module": "course_utils.grading.lab.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    web_app.settings["root_dir"] = serverapp.root_dir
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "/assignments/validate"), SummaryValidateHandler),
            (url_path_join(base, "/nbgrader_version"), VersionHandler),
        ],
    )
    prefix = url_path_join(base, "/formgrader")
    web_app.add_transform(lambda request: FormgraderPolicy(request, prefix))
    root = Path(serverapp.root_dir)
    if (root / "nbgrader_config.py").is_file() and (root / "solutions").is_dir() and os.access(root, os.W_OK):
        try:
            from course_utils.grading.pipeline.workspace import ensure_workspace  # the instructor's side only

            ensure_workspace(root)
        except Exception as error:  # the lab must still start; the log says why grading is unavailable
            serverapp.log.warning("course workspace not created in %s: %s", root, error)
    serverapp.log.info("course_utils.grading.lab.server: Validate summary on %s/assignments/validate", base)


def enable(prefix: str | None = None) -> Path:
    """Turn this extension on (and nbgrader's ``validate_assignment``, whose routes it serves, off) for the
    Python environment at ``prefix`` (default: this one): ``python -m course_utils.grading lab enable``.

    ``jupyter server extension enable`` only toggles extensions that already have a config file, so this
    writes the files itself, in ``<prefix>/etc/jupyter/jupyter_server_config.d/``.
    """
    import sys

    folder = Path(prefix or sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "course_utils.grading.lab.server.json": {"course_utils.grading.lab.server": True},
        # loaded after nbgrader.json (alphabetical order), so this one wins
        "nbgrader.server_extensions.validate_assignment.json": {
            "nbgrader.server_extensions.validate_assignment": False
        },
    }
    for name, extensions in settings.items():
        (folder / name).write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}, indent=2))
    (folder / "course_utils.grading.server.json").unlink(missing_ok=True)  # the module's name before the move
    hide_authoring(Path(prefix or sys.prefix))
    return folder


def hide_authoring(prefix: Path) -> Path:
    """Hide nbgrader's Create Assignment from learners (not locked: an instructor's user-level setting,
    ``jupyter labextension enable --level=user @jupyter/nbgrader:create-assignment``, shows it again)."""
    path = prefix / "etc" / "jupyter" / "labconfig" / "page_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.setdefault("disabledExtensions", {})[AUTHORING] = True
    config.get("lockedExtensions", {}).pop(AUTHORING, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path
