"""A real Prometheus (Debian's package, or any on PATH) on loopback, scraping every add-on that serves metrics.

Targets come through file_sd: one file per add-on under ``<addons>/targets/``, written when that add-on starts,
so add-ons started later are scraped without a restart.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import SCRAPE_INTERVAL
from .base import Addon, Context

INSTALL_PROMETHEUS = "sudo apt-get install -y prometheus   # Debian/Ubuntu; labkit runs its own, on 127.0.0.1"


class Prometheus(Addon):
    name = "prometheus"
    summary = "Prometheus server and UI"
    port_env = "LABKIT_PROMETHEUS_PORT"
    ready_path = "/-/ready"
    binary_env = "LABKIT_PROMETHEUS_BINARY"
    binary_name = "prometheus"
    install_hint = INSTALL_PROMETHEUS
    metrics_job = "prometheus"

    def prepare(self, ctx: Context) -> None:
        ctx.targets.parent.mkdir(parents=True, exist_ok=True)  # Prometheus watches the folder: it must exist first
        (ctx.folder / "prometheus.yml").write_text(prometheus_config(ctx.targets.parent))

    def command(self, ctx: Context) -> list[str]:
        binary = self.binary()
        assert binary is not None  # missing() is checked before start
        return [binary, f"--config.file={ctx.folder / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{ctx.port}", f"--storage.tsdb.path={ctx.folder / 'data'}",
                "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle"]


def prometheus_config(targets_dir: Path) -> str:
    """Prometheus' config: one job per file in the targets folder, found through file_sd."""
    return (f"# written by labkit; edits are replaced when the add-on starts again\n"
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n"
            f"scrape_configs:\n"
            f"  - job_name: labkit-addons   # each target group sets its own job label (e.g. dcgm-exporter)\n"
            f"    file_sd_configs:\n      - files: ['{targets_dir}/*.json']\n        refresh_interval: 5s\n")
