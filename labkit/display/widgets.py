"""ipywidgets: a rollout control panel and a live dashboard. They only display and call labkit functions.

The widgets never talk to the Kubernetes API themselves: the rollout panel calls ``labkit.kube.rollouts`` (each
button prints the kubectl command it stands for, so the panel teaches the commands too); the dashboard redraws
whatever table its ``sample()`` function returns.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display
from plotly.subplots import make_subplots

from ..errors import LabkitError
from ..i18n import _
from ..kube import rollouts
from ..kube.client import Lab


def _table_html(df: object) -> str:
    return df.to_html(index=False, border=0) if hasattr(df, "to_html") else html.escape(str(df))


class RolloutPanel:
    """Buttons for the rollout verbs and a live view of the pods by revision.

    Introduced in notebook 01_deployment_rollouts: ``lk.widgets.RolloutPanel(lab, "web", namespace=ns)``.
    """

    def __init__(self, lab: Lab, name: str, *, namespace: str, refresh_seconds: float = 2.0):
        self.lab, self.name, self.namespace = lab, name, namespace
        self.image = w.Text(description=_("image"), placeholder="nginx:1.27")
        self.replicas = w.BoundedIntText(description=_("replicas"), min=0, max=20, value=4)
        self.revision = w.BoundedIntText(description=_("undo to"), min=0, max=1000, value=0,
                                         tooltip=_("0 = the previous revision"))
        buttons = {
            _("set image"): self._set_image, _("scale"): self._scale, _("pause"): self._pause,
            _("resume"): self._resume, _("undo"): self._undo, _("refresh"): lambda: None,
        }
        self.buttons = []
        for label, action in buttons.items():
            b = w.Button(description=label, layout=w.Layout(width="90px"))
            b.on_click(self._wrap(action))
            self.buttons.append(b)
        self.log = w.HTML()
        self.pods = w.HTML()
        self.history = w.HTML()
        self.timer_seconds = refresh_seconds
        self.box = w.VBox([
            w.HBox([self.image, self.replicas, self.revision]), w.HBox(self.buttons), self.log,
            w.HBox([w.VBox([w.HTML(f"<b>{_('pods by revision')}</b>"), self.pods]),
                    w.VBox([w.HTML(f"<b>{_('rollout history')}</b>"), self.history])]),
        ])
        self.refresh()

    def _wrap(self, action: Callable[[], str | None]) -> Callable[[object], None]:
        def run(_button: object) -> None:
            try:
                message = action()
                if message:
                    self.log.value = f"<pre>{html.escape(message)}</pre>"
            except LabkitError as exc:
                self.log.value = f"<pre style='color:#b00'>{html.escape(str(exc))}</pre>"
            self.refresh()
        return run

    def _cmd(self, command: str, result: str) -> str:
        return f"$ kubectl -n {self.namespace} {command}\n{result}"

    def _set_image(self) -> str:
        image = self.image.value.strip()
        if not image:
            return "type an image first, e.g. nginx:1.27"
        result = rollouts.set_image(self.lab, self.name, namespace=self.namespace, image=image,
                                    change_cause=f"set image {image} (control panel)")
        return self._cmd(f"set image deployment/{self.name} *={image}", result)

    def _scale(self) -> str:
        result = rollouts.scale(self.lab, self.name, namespace=self.namespace, replicas=self.replicas.value)
        return self._cmd(f"scale deployment/{self.name} --replicas={self.replicas.value}", result)

    def _pause(self) -> str:
        return self._cmd(f"rollout pause deployment/{self.name}",
                         rollouts.rollout_pause(self.lab, self.name, namespace=self.namespace))

    def _resume(self) -> str:
        return self._cmd(f"rollout resume deployment/{self.name}",
                         rollouts.rollout_resume(self.lab, self.name, namespace=self.namespace))

    def _undo(self) -> str:
        to = self.revision.value or None
        flag = f" --to-revision={to}" if to else ""
        return self._cmd(f"rollout undo deployment/{self.name}{flag}",
                         rollouts.rollout_undo(self.lab, self.name, namespace=self.namespace, to_revision=to))

    def refresh(self) -> None:
        """Redraw the pods and history tables from the cluster (the refresh button does this too)."""
        try:
            self.pods.value = _table_html(rollouts.pods_by_revision(self.lab, self.name, namespace=self.namespace))
            self.history.value = _table_html(rollouts.rollout_history(self.lab, self.name, namespace=self.namespace))
        except LabkitError as exc:
            self.pods.value = f"<pre>{html.escape(str(exc))}</pre>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


class Dashboard:
    """Widgets that redraw from ``sample()`` every ``interval_s`` until :meth:`stop` (or the Stop button).

    ``sample()`` returns one row per ``key`` (a GPU, a pod) with one column per panel; the dashboard keeps the last
    ``history`` samples and draws each panel as one line per key.
    """

    def __init__(self, sample: Callable[[], pd.DataFrame], *, key: str, panels: Sequence[tuple[str, str]],
                 interval_s: float = 2.0, history: int = 60) -> None:
        self.sample, self.key, self.panels = sample, key, tuple(panels)
        self.interval_s, self.history = interval_s, history
        self.frames: list[pd.DataFrame] = []
        self.updates = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._updated = threading.Condition()
        self._plot = w.Output()
        self._status = w.HTML()
        self._button = w.Button(description=_("Stop"), icon="stop")
        self._button.on_click(lambda _b: self.stop())
        self.widget = w.VBox([w.HBox([self._button, self._status]), self._plot])
        self._thread = threading.Thread(target=self._loop, name="labkit-dashboard", daemon=True)

    def _ipython_display_(self) -> None:
        display(self.widget)

    def start(self) -> Dashboard:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                snap = self.sample().assign(t=time.time())
                self.frames = (self.frames + [snap])[-self.history:]
                self.render()
                with self._updated:
                    self.updates += 1
                    self._updated.notify_all()
            except Exception as exc:  # noqa: BLE001 -- show the failure in the widget, keep the kernel alive
                self.error = f"{type(exc).__name__}: {exc}"
                self._status.value = f"<b>{_('stopped')}</b>: {self.error}"
                with self._updated:
                    self._updated.notify_all()
                return
            self._stop.wait(self.interval_s)

    def wait_for_updates(self, count: int, *, timeout: float = 30.0) -> int:
        """Block until the dashboard has redrawn ``count`` times (or failed, or ``timeout`` passed); return how many."""
        with self._updated:
            self._updated.wait_for(lambda: self.updates >= count or self.error is not None, timeout=timeout)
            return self.updates

    def figure(self) -> go.Figure:
        """The current plot: one panel per metric, one line per key."""
        data = pd.concat(self.frames) if self.frames else pd.DataFrame(columns=[self.key, "t"])
        fig = make_subplots(rows=1, cols=len(self.panels), subplot_titles=[title for _, title in self.panels])
        for col, (metric, _title) in enumerate(self.panels, start=1):
            for key, part in data.groupby(self.key):
                fig.add_scatter(x=part["t"] - data["t"].max(), y=pd.to_numeric(part[metric], errors="coerce"),
                                name=str(key), legendgroup=str(key), showlegend=col == 1, row=1, col=col)
        fig.update_layout(height=300, margin={"t": 40, "b": 30}, xaxis_title="seconds ago")
        return fig

    def render(self) -> None:
        fig = self.figure()
        # Set the Output widget's state instead of printing into it: from a background thread, printing would
        # land in whichever cell runs at that moment.
        bundle = {"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": "dashboard"}
        self._plot.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        self._status.value = f"update {self.updates + 1}, every {self.interval_s:g}s"

    def stop(self) -> None:
        """Stop refreshing (the last picture stays)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.interval_s + 5)
        self._status.value = f"stopped after {self.updates} updates"
        self._button.disabled = True
