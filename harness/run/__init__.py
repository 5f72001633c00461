"""Running methods: one run (`runner`), its spec, what a method is fed, inference, saliency maps,
latency, the gallery, and grids on processes or Ray."""
