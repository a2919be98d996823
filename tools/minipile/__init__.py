"""The deterministic builder of the embedded minipile corpus.

Readers use `hullft.data.minipile`; this package only rebuilds the committed files::

    python -m tools.minipile fetch --sources /tmp/minipile-src
    python -m tools.minipile build --sources /tmp/minipile-src --out hullft/assets/minipile

Modules, in the order the build uses them:

- `params`: the fixed parameters and pinned package versions (changing one changes
  the committed bytes);
- `sources`: fetching and unpacking the pinned Debian packages, `SourceTree`;
- `formats`: turning each source format (Python, reST, HTML, man, WordNet, dictd,
  the KJV) into text segments;
- `documents`: `Document`, text cleaning and packing segments into documents;
- `domains`: which sources each domain takes, and the `DOMAINS` table;
- `build`: seeded selection, the train/test split, serialising and compressing;
- `datacard`: the generated ``DATACARD.md``;
- `cli`: ``fetch`` / ``build`` (run by ``__main__``).
"""
