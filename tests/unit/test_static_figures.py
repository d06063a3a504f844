"""Figures read everywhere: the plotly mimetype for JupyterLab plus a static PNG drawn by the machine's Chromium."""

from __future__ import annotations

import base64
import struct

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from labkit.display import figures


@pytest.fixture
def renderer():
    before = pio.renderers.default
    yield
    pio.renderers.default = before


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_a_figure_carries_its_interactive_json_and_a_static_png(renderer):
    assert figures.static_images_available(), "static figures need Chromium (apt-get install chromium)"
    figures.show_offline()
    assert pio.renderers.default == f"plotly_mimetype+{figures.STATIC_RENDERER}"
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[3, 1, 2], name="ready"))
    fig.update_layout(height=300)
    bundle = fig._repr_mimebundle_()
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3, 1, 2]
    assert "text/html" not in bundle, "plotly.js must not be embedded in the notebook"
    assert _png_size(base64.b64decode(bundle["image/png"])) == (figures.STATIC_WIDTH_PX, 300)


def test_without_chromium_figures_stay_interactive_and_it_says_why(renderer, monkeypatch, capsys):
    monkeypatch.setattr(figures, "static_images_available", lambda: None)
    figures.show_offline()
    assert pio.renderers.default == "plotly_mimetype"
    assert "no Chromium found" in capsys.readouterr().err
    assert set(go.Figure(go.Bar(y=[1]))._repr_mimebundle_()) == {"application/vnd.plotly.v1+json"}


def test_a_failing_browser_costs_the_picture_not_the_cell(monkeypatch, capsys):
    import kaleido

    def broken(**_kw):
        raise RuntimeError("browser exited")

    monkeypatch.setattr(kaleido, "start_sync_server", broken)
    png = figures._StaticPng()
    assert png.to_mimebundle(go.Figure().to_dict()) == {}
    assert png.to_mimebundle(go.Figure().to_dict()) == {}   # said once, not tried again per figure
    err = capsys.readouterr().err
    assert err.count("static PNG failed (RuntimeError: browser exited)") == 1
