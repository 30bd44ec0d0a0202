"""One typed settings object for the whole product, read from `URNN_*` environment variables.

Built once per process (`get_settings()`), never at import time, so tests can hand a different
`Settings` to the code under test instead of mutating `os.environ`.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Operator-facing configuration; every field is `URNN_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="URNN_", extra="ignore")

    var_dir: Path = Field(
        default=Path("var"),
        description="Folder for the embedded default's local state (SQLite files, MLflow store).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: a SQLite-backed store at <var_dir>/mlflow.db.",
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Where new MLflow experiments keep artifacts; default: <var_dir>/mlartifacts.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where models run: cuda when available under `auto`."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Threads torch uses for intra-op CPU work (torch.set_num_threads), applied by the "
            "`urnn` command before training or evaluating; default None keeps torch's default "
            "(one per core). Set it on shared machines, e.g. 2 on a 2-core box shared with "
            "other jobs, so torch does not oversubscribe the CPU."
        ),
    )

    def resolved_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.var_dir / 'mlflow.db').resolve()}"

    def resolved_artifact_root(self) -> str:
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        return (self.var_dir / "mlartifacts").resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
