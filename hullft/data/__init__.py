"""Corpus data: readers, stores and the embedded minipile corpus."""
