"""Plot style for every figure in the book: the single place where colours and sizes are set.

Figures get an explicit white face colour, so they read as light cards on a dark page as well as
on a light one. Colours are the Okabe-Ito palette, which stays distinct under colour blindness.

Usage in a notebook::

    import _style
    _style.apply()
    fig, ax = _style.figure()
    ax.plot(x, y, **_style.KDE_KW)
    _style.style_ax(ax, xlabel="x", ylabel="density")
"""

import matplotlib as mpl
import matplotlib.pyplot as plt

FACECOLOR = "white"
TEXTCOLOR = "#222222"

# Okabe-Ito colour-blind safe palette.
BLUE, ORANGE, GREEN, VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
PURPLE, SKY, YELLOW, GREY = "#CC79A7", "#56B4E9", "#F0E442", "#7f7f7f"
PALETTE = [BLUE, VERMILLION, GREEN, ORANGE, PURPLE, SKY, GREY, YELLOW]

# Keyword sets, one per role, so a role looks the same on every page.
GAUSS_KW = dict(color=GREY, lw=1.5, ls="--", label="reference $\\mathcal{N}(0, 1)$")
DATA_KW = dict(color=BLUE, s=8, alpha=0.5, lw=0, label="data")
HIST_KW = dict(color=BLUE, alpha=0.35, density=True, label="data (histogram)")
ECDF_KW = dict(color=BLUE, lw=1.5, where="post", label="ECDF")
KDE_KW = dict(color=VERMILLION, lw=2.0, label="KDE")
MIXTURE_KW = dict(color=GREEN, lw=2.0, label="Gaussian mixture")
TRUTH_KW = dict(color=TEXTCOLOR, lw=1.2, ls=":", label="true density")
MARK_KW = dict(color=ORANGE, marker="o", ms=7, ls="none", zorder=5)

RC = {
    "figure.facecolor": FACECOLOR,
    "savefig.facecolor": FACECOLOR,
    "axes.facecolor": FACECOLOR,
    "axes.edgecolor": TEXTCOLOR,
    "axes.labelcolor": TEXTCOLOR,
    "axes.titlecolor": TEXTCOLOR,
    "xtick.color": TEXTCOLOR,
    "ytick.color": TEXTCOLOR,
    "text.color": TEXTCOLOR,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.dpi": 110,
    "figure.constrained_layout.use": True,
}


def apply():
    """Set the book's matplotlib defaults (call once per notebook)."""
    mpl.rcParams.update(RC)


def figure(ncols=1, nrows=1, width=None, height=3.4, **kwargs):
    """Return ``(fig, axes)`` sized for the book's text column."""
    width = width if width is not None else min(4.8 * ncols, 10.0)
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), **kwargs)


def style_ax(ax, *, title=None, xlabel=None, ylabel=None, legend=True):
    """Label an axis and add a legend when it has labelled artists."""
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    handles, _ = ax.get_legend_handles_labels()
    if legend and handles:
        ax.legend()
    return ax


def glue_figure(name, fig):
    """Glue ``fig`` for a ``{glue:figure}`` directive and close it, so it is shown once, captioned."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)
