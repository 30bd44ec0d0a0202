"""urnn-forecast: cross-cutting pieces shared by `models`, `training` and `service`.

This package holds what is neither a model nor a pipeline stage: the typed settings and the
`urnn` command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("urnn-forecast")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+unknown"

# The one format of every `urnn` command's log lines and of the service's, however it is run
# (`urnn serve`, its workers, `uvicorn service.main:create_app --factory`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
