"""The live side: frame sources, the synthetic puppet, and (later) the live loop, engines and sinks."""
