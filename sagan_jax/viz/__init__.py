"""Pictures of samples and attention, on the host (numpy + PIL only).

Nothing here imports matplotlib, so the library draws on a bare install and
inside headless training jobs. One module per concept:

* `grids` — ``image_grid``, ``to_uint8``, ``save_png`` (atomic);
* `colormap` — ``apply_colormap`` (viridis, jet, gray) without matplotlib;
* `attention_figure` — ``attention_figure``, ``default_query_points``; what it draws on
  top of its panels (markers, titles, colour bar, ``attention_caption``) in `annotations`;
* `explorer_page` — ``explorer_html``: one self-contained HTML page of samples and every
  attention layer's maps.

The names are re-exported here: ``from sagan_jax import viz; viz.image_grid(...)``.
"""

from sagan_jax.viz.annotations import attention_caption
from sagan_jax.viz.attention_figure import attention_figure, default_query_points
from sagan_jax.viz.colormap import apply_colormap
from sagan_jax.viz.explorer_page import explorer_html, map_mosaic, quantized_rows
from sagan_jax.viz.grids import image_grid, save_png, to_uint8

__all__ = [
    "apply_colormap",
    "attention_caption",
    "attention_figure",
    "default_query_points",
    "explorer_html",
    "image_grid",
    "map_mosaic",
    "quantized_rows",
    "save_png",
    "to_uint8",
]
