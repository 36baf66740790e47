"""rebuilder: keeps golden VM images patched."""
