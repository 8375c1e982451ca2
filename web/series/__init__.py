"""The MRI series app: chunked uploads of series zips, background analysis jobs, slice viewer."""
