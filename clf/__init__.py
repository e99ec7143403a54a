"""clf: classify arXiv papers into computer-science categories with PyTorch Lightning."""

__version__ = "0.1.0"

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "cs.AI",
    "cs.CL",
    "cs.CV",
    "cs.LG",
    "cs.CR",
    "cs.DB",
    "cs.DC",
    "cs.NE",
    "cs.RO",
    "cs.SE",
)
"""The ten computer-science categories clf classifies by default."""
