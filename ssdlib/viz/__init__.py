"""Pictures of SSD: default boxes (``anchors``, ``anchor_explorer``), PR curves (``pr_curves``)
and the course figures (``figures``). Submodules are imported on demand so that importing
``ssdlib.viz`` never pulls in ipywidgets."""
