"""A speech-driven IVR: "say sales or support", routed by the word the caller says."""
