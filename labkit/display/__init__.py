"""What a learner sees besides tables: plotly figures (``figures``) and ipywidgets panels (``widgets``)."""
