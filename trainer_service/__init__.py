"""The teachable machine: labelled examples in, a trained image classifier out."""
