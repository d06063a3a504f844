"""An ipywidgets control panel for a Deployment's rollout: set image, scale, pause, resume, undo.

Introduced in notebook 01_deployment_rollouts. The widgets only display and call labkit functions
(``labkit.rollouts``); they never talk to the Kubernetes API themselves. Each button prints the kubectl
command it stands for, so the panel teaches the commands too.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as w

from . import rollouts
from .client import Lab
from .errors import LabkitError


def _table_html(df: object) -> str:
    return df.to_html(index=False, border=0) if hasattr(df, "to_html") else html.escape(str(df))


class RolloutPanel:
    """Buttons for the rollout verbs and a live view of the pods by revision.

    Introduced in notebook 01_deployment_rollouts: ``lk.widgets.RolloutPanel(lab, "web", namespace=ns)``.
    """

    def __init__(self, lab: Lab, name: str, *, namespace: str, refresh_seconds: float = 2.0):
        self.lab, self.name, self.namespace = lab, name, namespace
        self.image = w.Text(description="image", placeholder="nginx:1.27")
        self.replicas = w.BoundedIntText(description="replicas", min=0, max=20, value=4)
        self.revision = w.BoundedIntText(description="undo to", min=0, max=1000, value=0,
                                         tooltip="0 = the previous revision")
        buttons = {
            "set image": self._set_image, "scale": self._scale, "pause": self._pause,
            "resume": self._resume, "undo": self._undo, "refresh": lambda: None,
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
            w.HBox([w.VBox([w.HTML("<b>pods by revision</b>"), self.pods]),
                    w.VBox([w.HTML("<b>rollout history</b>"), self.history])]),
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
