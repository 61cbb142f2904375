"""The live side: frame sources and capture, the per-frame pipeline, the output stage,
the loop, engines, sinks, audio sync, trust marks and the live commands."""
