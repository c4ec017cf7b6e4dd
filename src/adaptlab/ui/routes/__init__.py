"""The web app's page groups, one FastAPI router each; :func:`adaptlab.ui.app.create_app` includes them all.

``home`` (the front page), ``uploads`` (upload, check, configure, plan and start a study), ``jobs`` (live
progress, cancel, resume), ``studies`` (results, report, study file, JSON API), ``sketch``, ``models`` (the
coordinator's model page: retrain, rollback). Their shared state comes from :mod:`adaptlab.ui.context`.
"""
from adaptlab.ui.routes import home, jobs, models, sketch, studies, uploads

ROUTERS = [home.router, uploads.router, jobs.router, studies.router, sketch.router, models.router]

__all__ = ["ROUTERS"]
