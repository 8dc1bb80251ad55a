"""The course's Jupyter server extension: the grading workspace on first use, and Validate's summary.

Enabled by ``make setup`` (``jupyter server extension enable --sys-prefix course_utils.grading.server``) in
place of nbgrader's ``validate_assignment`` extension, whose two routes it serves with the same JSON:

* ``POST /assignments/validate``: ``course_utils.grading.validate`` (a per-task summary first; a lesson
  answers that there is nothing to grade);
* ``GET /nbgrader_version``: the version check of nbgrader's Validate button.

When the server's root holds the course (``nbgrader_config.py`` beside ``solutions/``, as with ``make lab``),
it also creates the grading workspace and the exchange on start (``ensure_workspace``), so the formgrader
and the Assignment List work from a fresh clone.

    $ jupyter server extension list 2>&1 | grep course_utils   # course_utils.grading.server enabled
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

from course_utils.grading.workspace import ensure_workspace


class SummaryValidateHandler(ValidateAssignmentHandler):
    """nbgrader's Validate route, answered by ``validate.validate_notebook``."""

    def validate_notebook(self, path: str) -> dict:
        from course_utils.grading.validate import validate_notebook

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
        self.finish(json.dumps({"success": True} if same else {
            "success": False, "message": f"The nbgrader lab extension ({self.get_argument('version')}) and server "
                                        f"({nbgrader_version}) differ: run make setup again."}))


def _jupyter_server_extension_points():
    return [{"module": "course_utils.grading.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    web_app.settings["root_dir"] = serverapp.root_dir
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, "/assignments/validate"), SummaryValidateHandler),
                                 (url_path_join(base, "/nbgrader_version"), VersionHandler)])
    root = Path(serverapp.root_dir)
    if (root / "nbgrader_config.py").is_file() and (root / "solutions").is_dir() and os.access(root, os.W_OK):
        try:
            ensure_workspace(root)
        except Exception as error:  # the lab must still start; the log says why grading is unavailable
            serverapp.log.warning("course workspace not created in %s: %s", root, error)
    serverapp.log.info("course_utils.grading.server: Validate summary on %s/assignments/validate", base)
