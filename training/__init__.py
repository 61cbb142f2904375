"""The offline side: building a dataset from a target video, training and export."""
