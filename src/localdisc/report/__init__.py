"""Pictures and reports: overlays, embedding/cluster maps, curves, Markdown summaries.
Modules are imported directly (``localdisc.report.overlays`` ...) so matplotlib loads only when needed."""
